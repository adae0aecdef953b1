"""Render the foreign SynthAV corpus: `python -m benchmarks.foreign.render --out DIR --clips N`.

One process per clip (a pool of `--workers`): sox writes the soundtrack, Pillow draws the frames,
which are piped as rawvideo into the ffmpeg CLI together with the WAV. Each file is written under a
temporary name and renamed when complete, so a stopped run resumes where it was (clips are a pure
function of seed and index); the manifest is written last, only when every clip is there.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.foreign.captions import captions
from benchmarks.foreign.draw import frames
from benchmarks.foreign.encode import audio_args, ffmpeg_base, require_tools, video_args
from benchmarks.foreign.sound import ToolError, render_audio
from benchmarks.foreign.world import ClipPlan, WorldConfig, plan_clip, twin_groups

CONFIG_NAME = "foreign.json"


@dataclass
class RenderSummary:
    out_dir: Path
    manifest: Path
    clips: int
    rendered: int
    reused: int
    seconds: float
    flags: dict[str, int] = field(default_factory=dict)


def encode_clip(plan: ClipPlan, out: Path) -> None:
    """Write `plan` as one media file at `out` (atomically: complete or absent)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".work-") as tmp:
        work = Path(tmp)
        wav = render_audio(plan, work)
        part = work / f"clip{plan.format.suffix}"
        cmd = [
            *ffmpeg_base(),
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{plan.width}x{plan.height}",
            "-r", f"{plan.fps:g}", "-i", "pipe:0",
            "-i", str(wav),
            "-map", "0:v:0", "-map", "1:a:0",
            *video_args(plan.format, plan.crf),
            *audio_args(plan.format, plan.sample_rate, plan.channels),
            "-t", f"{plan.duration_s:g}", "-f", plan.format.muxer, str(part),
        ]  # fmt: skip
        with open(work / "ffmpeg.log", "w+b") as log:
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=log)
            assert proc.stdin is not None
            try:
                for frame in frames(plan):
                    proc.stdin.write(frame)
            except BrokenPipeError:
                pass  # ffmpeg died early: its exit code and log say why, below
            finally:
                proc.stdin.close()
            rc = proc.wait(timeout=300)
            if rc != 0:
                log.seek(0)
                tail = log.read().decode(errors="replace").strip()[-800:]
                raise ToolError(f"ffmpeg exited {rc} encoding {plan.id}: {tail}")
        os.replace(part, out)


def manifest_record(plan: ClipPlan) -> dict[str, Any]:
    return {
        "id": plan.id,
        "video": f"media/{plan.media_name}",
        "captions": captions(plan),
        "split": "test",
        "meta": plan.meta(),
    }


def _render_one(cfg: WorldConfig, index: int, media: str, overwrite: bool) -> tuple[bool, dict]:
    plan = plan_clip(cfg, index)
    out = Path(media) / plan.media_name
    fresh = overwrite or not out.is_file()
    if fresh:
        encode_clip(plan, out)
    return fresh, manifest_record(plan)


def _config_record(cfg: WorldConfig) -> dict[str, Any]:
    return {
        "format_version": 1,
        "clips": cfg.clips,
        "seed": cfg.seed,
        "duration_s": cfg.duration_s,
        "heldout_pairs": sorted(list(p) for p in cfg.heldout_pairs),
    }


def render_corpus(
    out_dir: str | os.PathLike[str],
    cfg: WorldConfig,
    *,
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> RenderSummary:
    """Render every clip of `cfg` under out_dir/media and write out_dir/manifest.jsonl."""
    require_tools()
    out = Path(out_dir)
    media = out / "media"
    media.mkdir(parents=True, exist_ok=True)
    config_path = out / CONFIG_NAME
    wanted = _config_record(cfg)
    if config_path.is_file() and not overwrite:
        found = json.loads(config_path.read_text())
        if found != wanted:
            raise ValueError(
                f"{out} holds a corpus rendered with another configuration ({found}); "
                "choose another --out or pass --overwrite"
            )
    config_path.write_text(json.dumps(wanted, indent=2) + "\n")
    start = time.perf_counter()
    workers = max(1, workers or min(2, os.cpu_count() or 1))
    records: dict[int, dict[str, Any]] = {}
    failures: list[str] = []
    rendered = 0
    with ProcessPoolExecutor(max_workers=workers) as pool:
        jobs = {
            pool.submit(_render_one, cfg, i, str(media), overwrite): i for i in range(cfg.clips)
        }
        for done, job in enumerate(as_completed(jobs), 1):
            i = jobs[job]
            try:
                fresh, records[i] = job.result()
                rendered += fresh
            except (ToolError, OSError, subprocess.SubprocessError, ValueError) as e:
                failures.append(f"clip {i}: {e}")
            if progress and (done % 25 == 0 or done == cfg.clips):
                print(f"{done}/{cfg.clips} clips", file=sys.stderr, flush=True)
    if failures:
        shown = "\n".join(failures[:5])
        raise RuntimeError(
            f"{len(failures)} of {cfg.clips} clips failed (finished clips are kept; rerun to "
            f"resume):\n{shown}"
        )
    manifest = out / "manifest.jsonl"
    part = out / ".manifest.jsonl.part"
    with open(part, "w", encoding="utf-8") as f:
        for i in range(cfg.clips):
            f.write(json.dumps(records[i], ensure_ascii=False) + "\n")
    os.replace(part, manifest)
    metas = [r["meta"] for r in records.values()]
    flags = {
        "offscreen": sum(m["offscreen"] for m in metas),
        "silent_object": sum(m["silent_object"] for m in metas),
        "heldout": sum(m["heldout"] for m in metas),
        "twin_groups": twin_groups(cfg),
        "stereo": sum(m["channels"] == 2 for m in metas),
    }
    return RenderSummary(
        out, manifest, cfg.clips, rendered, cfg.clips - rendered, time.perf_counter() - start, flags
    )


def _heldout_pairs(spec: str | None, source: str | None) -> frozenset[tuple[str, str]]:
    pairs: set[tuple[str, str]] = set()
    if spec:
        for item in spec.split(","):
            kind, sep, attr = item.strip().partition(":")
            if not sep:
                raise ValueError(f"--heldout wants kind:attribute pairs, got {item!r}")
            pairs.add((kind, attr))
    if source:
        # The own corpus's run record lists the pairs its train split never shows.
        data = json.loads(Path(source).read_text())
        if "heldout" not in data:
            raise ValueError(f"{source} has no 'heldout' list of (kind, attribute) pairs")
        pairs.update((str(k), str(a)) for k, a in data["heldout"])
    return frozenset(pairs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.foreign.render", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--clips", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None, help="processes (default: 2)")
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per clip")
    parser.add_argument("--heldout", default=None, help="kind:attr pairs, e.g. bell:red,drum:small")
    parser.add_argument(
        "--heldout-from", default=None, help="an own corpus's synthav.json: flag its pairs"
    )
    parser.add_argument("--overwrite", action="store_true", help="re-render existing clips")
    args = parser.parse_args(argv)
    try:
        cfg = WorldConfig(
            clips=args.clips,
            seed=args.seed,
            duration_s=args.duration,
            heldout_pairs=_heldout_pairs(args.heldout, args.heldout_from),
        )
        summary = render_corpus(args.out, cfg, workers=args.workers, overwrite=args.overwrite,
                                progress=True)  # fmt: skip
    except (ValueError, RuntimeError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(
        f"{summary.clips} clips ({summary.rendered} rendered, {summary.reused} kept) in "
        f"{summary.seconds:.1f} s → {summary.manifest}"
    )
    print(json.dumps({"clips": summary.clips, "seconds": round(summary.seconds, 2),
                      "manifest": str(summary.manifest), **summary.flags}))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

__all__ = ["RenderSummary", "encode_clip", "main", "render_corpus"]
