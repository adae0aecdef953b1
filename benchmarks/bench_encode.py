"""Query-encoding latency: torch vs ONNX Runtime, for text, a 6 s audio clip and a 6 s video clip.

    python -m benchmarks.bench_encode [--ckpt DIR] [--repeats 50] [--threads 1]

What a search pays before it can look anything up: the encoder forward pass on the query, measured
alone (features already made) and end to end through `index.query.QueryEncoder` (decode + features
+ encoder), with the `small` preset (a fresh one unless --ckpt; latency does not depend on the
weights) exported by `models.onnx_export.export_onnx`. One thread each, as the service runs them.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from benchmarks._common import p50_p99, write_result


def timed(fn: Callable[[], object], repeats: int) -> dict[str, float]:
    fn()
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return p50_p99(times)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", type=Path, default=None)
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--note", default="")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from index.query import QueryEncoder
    from models.config import Modality, preset
    from models.media import decode
    from models.model import TrimodalModel
    from models.onnx_export import OnnxEncoders, export_onnx
    from training.synthav import GeneratorConfig, generate_corpus

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ckpt = args.ckpt
        if ckpt is None:
            ckpt = work / "ckpt"
            TrimodalModel(preset("small")).save(ckpt)
        t = time.perf_counter()
        export_onnx(ckpt, work / "onnx")
        export_s = time.perf_counter() - t
        model = TrimodalModel.load(ckpt).eval()
        onnx = OnnxEncoders(work / "onnx", model, args.threads)
        generate_corpus(work / "q", GeneratorConfig(clips=1, seed=2))  # one 6 s mp4
        clip = next((work / "q" / "media").glob("*"))
        cfg = model.cfg
        size = (cfg.visual.image_size, cfg.visual.image_size)
        media = decode(
            clip,
            fps=cfg.visual.fps,
            size=size,
            sample_rate=cfg.audio.sample_rate,
            fit=cfg.visual.fit,
        )
        mel, mel_mask = model.audio_inputs([media.audio])
        frames, frame_mask = model.visual_inputs([media.frames])
        sentence = ["a small red ball bounces quickly on the grass"]
        audio_enc = model.encoders[Modality.AUDIO]
        visual_enc = model.encoders[Modality.VISUAL]
        torch_q, onnx_q = QueryEncoder(model), QueryEncoder(model, onnx=onnx)
        rows: list[dict[str, Any]] = []
        with torch.inference_mode():
            for query, stage, fn_torch, fn_onnx in (
                (
                    "text",
                    "encoder",
                    lambda: model.encode_text(sentence),
                    lambda: onnx.text(sentence),
                ),
                (
                    "audio 6 s",
                    "encoder",
                    lambda: audio_enc(mel, mel_mask),
                    lambda: onnx.audio(mel, mel_mask),
                ),
                (
                    "video 6 s",
                    "encoder",
                    lambda: visual_enc(frames, frame_mask),
                    lambda: onnx.visual(frames, frame_mask),
                ),
                (
                    "text",
                    "end to end",
                    lambda: torch_q.text(sentence[0]),
                    lambda: onnx_q.text(sentence[0]),
                ),
                (
                    "audio 6 s",
                    "end to end",
                    lambda: torch_q.audio(clip),
                    lambda: onnx_q.audio(clip),
                ),
                (
                    "video 6 s",
                    "end to end",
                    lambda: torch_q.video(clip),
                    lambda: onnx_q.video(clip),
                ),
            ):
                rows.append(
                    {
                        "query": query,
                        "stage": stage,
                        "torch": timed(fn_torch, args.repeats),
                        "onnx": timed(fn_onnx, args.repeats),
                    }
                )
    table = Table(title=f"query encoding, {args.threads} thread(s), small preset (ms)")
    for col in ("query", "measured", "torch p50", "torch p99", "ORT p50", "ORT p99", "speed-up"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            r["query"],
            r["stage"],
            f"{r['torch']['p50_ms']:.2f}",
            f"{r['torch']['p99_ms']:.2f}",
            f"{r['onnx']['p50_ms']:.2f}",
            f"{r['onnx']['p99_ms']:.2f}",
            f"x{r['torch']['p50_ms'] / r['onnx']['p50_ms']:.1f}",
        )
    Console(width=140).print(table)
    result = {
        "note": args.note,
        "threads": args.threads,
        "export_s": round(export_s, 1),
        "rows": rows,
    }
    write_result("bench_encode", result)
    return result


if __name__ == "__main__":
    main()
