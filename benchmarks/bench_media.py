"""Media benchmark: decode speed (x real time) and SynthAV generation speed (clips/s).

    python -m benchmarks.bench_media [--clips 40] [--repeats 5]

Decoding is measured through `models.media.decode` with the product's settings (the `small`
preset's frame rate, size and fit; 16 kHz mono audio) and, for a reference ratio in the same run,
with bare PyAV (decode every frame and audio packet, convert nothing). Two inputs: the default
SynthAV clip (6 s, 128x128, 12 fps) and a generated 60 s 720p 30 fps h264+aac clip.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import av
import numpy as np
from rich.console import Console
from rich.table import Table

from benchmarks._common import write_result
from models.config import preset
from models.media import MediaLimits, decode
from training.synthav import GeneratorConfig, generate_corpus


def make_720p(path: Path, seconds: int = 60, fps: int = 30) -> None:
    """A 720p30 h264 + 48 kHz stereo aac clip with real motion (a gradient and a moving block)."""
    h, w = 720, 1280
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 // w, yy * 255 // h, np.full_like(xx, 90)], axis=-1).astype(np.uint8)
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=fps)
        v.width, v.height, v.pix_fmt = w, h, "yuv420p"
        v.options = {"preset": "ultrafast", "crf": "23"}
        a = out.add_stream("aac", rate=48_000, layout="stereo")
        for k in range(seconds * fps):
            img = base.copy()
            x = (k * 13) % (w - 160)
            img[200:360, x : x + 160] = (255, 255, 255)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = k
            out.mux(v.encode(frame))
        out.mux(v.encode(None))
        t = np.arange(seconds * 48_000) / 48_000
        tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        stereo = np.stack([tone, tone])
        for start in range(0, stereo.shape[1], 1024):
            chunk = np.ascontiguousarray(stereo[:, start : start + 1024])
            sound = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
            sound.sample_rate, sound.pts = 48_000, start
            out.mux(a.encode(sound))
        out.mux(a.encode(None))


def bare_decode(path: Path) -> None:
    with av.open(str(path)) as c:
        c.streams.video[0].thread_type = "AUTO"
        for _ in c.decode(*c.streams.video, *c.streams.audio):
            pass


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=40, help="SynthAV clips to generate")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=60, help="length of the 720p clip")
    parser.add_argument("--note", default="", help="conditions worth recording (e.g. other load)")
    args = parser.parse_args(argv)

    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cfg = GeneratorConfig(clips=args.clips, seed=0)
        start = time.perf_counter()
        generate_corpus(root / "synthav", cfg, workers=None)
        gen_s = time.perf_counter() - start
        synth_clip = next((root / "synthav/media").iterdir())
        big = root / "720p.mp4"
        make_720p(big, seconds=args.seconds)

        limits = MediaLimits()
        # the product's settings: the `small` preset's frame rate, size and fit (every frame of
        # the file is converted too, for the picture changes: `models.media.DecodedMedia`)
        model_cfg = preset("small")
        vis, sr = model_cfg.visual, model_cfg.audio.sample_rate
        size = (vis.image_size, vis.image_size)
        for name, path, duration in (
            ("synthav 6s 128x128 12fps", synth_clip, cfg.render.duration_s),
            (f"{args.seconds}s 1280x720 30fps h264", big, float(args.seconds)),
        ):
            repeats = args.repeats if duration < 30 else max(1, args.repeats // 2)
            ours = timed(
                lambda p=path: decode(
                    p, fps=vis.fps, size=size, sample_rate=sr, fit=vis.fit, limits=limits
                ),
                repeats,
            )
            bare = timed(lambda p=path: bare_decode(p), repeats)
            rows[name] = {
                "duration_s": duration,
                "decode_s": round(ours, 4),
                "x_realtime": round(duration / ours, 1),
                "bare_pyav_s": round(bare, 4),
                "bare_x_realtime": round(duration / bare, 1),
                "overhead_vs_bare": round(ours / bare, 2),
            }

    small = preset("small")
    table = Table(
        title=f"media decode (models.media.decode: {small.visual.fps:g} fps, "
        f"{small.visual.image_size}x{small.visual.image_size} {small.visual.fit}, "
        f"{small.audio.sample_rate // 1000} kHz mono)"
    )
    for col in ("input", "ours s", "x real time", "bare PyAV s", "bare x rt", "ours/bare"):
        table.add_column(col, justify="right" if col != "input" else "left")
    for name, r in rows.items():
        table.add_row(
            name,
            f"{r['decode_s']:.3f}",
            f"{r['x_realtime']:.0f}",
            f"{r['bare_pyav_s']:.3f}",
            f"{r['bare_x_realtime']:.0f}",
            f"{r['overhead_vs_bare']:.2f}",
        )
    console = Console()
    console.print(table)
    clips_per_s = args.clips / gen_s
    console.print(
        f"SynthAV generation: {args.clips} clips in {gen_s:.1f} s = {clips_per_s:.1f} clips/s"
    )
    result = {
        "note": args.note,
        "decode": rows,
        "synthav_generation": {
            "clips": args.clips,
            "seconds": round(gen_s, 2),
            "clips_per_s": round(clips_per_s, 2),
        },
    }
    write_result("bench_media", result)
    return result


if __name__ == "__main__":
    main()
