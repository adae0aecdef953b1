"""The robustness set: `python -m benchmarks.foreign.reencode --manifest M --out DIR`.

Each clip of the chosen split is re-encoded by the ffmpeg CLI to one variant (another container,
codec, frame rate, frame size, sample rate and channel count), cycling through `VARIANTS` from an
offset drawn from the seed, so every variant is equally represented and a run is reproducible.
Captions, ids and meta are kept; meta's fps, width, height, sample_rate and channels say what the
new file holds and "variant" names the recipe. Sizes are forced (aspect ratio may change, as it
does when footage is re-published).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.foreign.encode import audio_args, ffmpeg_base, require_tools, video_args
from benchmarks.foreign.sound import ToolError, run_tool
from benchmarks.foreign.world import FORMAT_BY_NAME, Format
from training.datasets import ManifestItem, load_manifest


@dataclass(frozen=True)
class Variant:
    format: Format
    fps: float
    width: int
    height: int
    sample_rate: int
    channels: int

    @property
    def name(self) -> str:
        layout = "stereo" if self.channels == 2 else "mono"
        return (f"{self.format.name}-{self.fps:g}fps-{self.width}x{self.height}-"
                f"{self.sample_rate}hz-{layout}")  # fmt: skip


VARIANTS = (
    Variant(FORMAT_BY_NAME["webm-vp9-opus"], 15.0, 160, 120, 48000, 2),
    Variant(FORMAT_BY_NAME["mkv-h264-flac"], 25.0, 96, 96, 22050, 1),
    Variant(FORMAT_BY_NAME["mov-mjpeg-pcm"], 10.0, 176, 144, 8000, 1),
    Variant(FORMAT_BY_NAME["mp4-h264-aac"], 30.0, 256, 144, 44100, 2),
    Variant(FORMAT_BY_NAME["webm-vp8-vorbis"], 24.0, 128, 96, 32000, 1),
    Variant(FORMAT_BY_NAME["mkv-mpeg4-mp3"], 8.0, 192, 192, 11025, 1),
    Variant(FORMAT_BY_NAME["mov-h264-alac"], 20.0, 120, 160, 24000, 2),
)
# A middling quality: the point is other encoders' artefacts, not a starved bitrate.
CRF = 28


def variant_for(position: int, seed: int) -> Variant:
    offset = random.Random(f"reencode:{seed}").randrange(len(VARIANTS))
    return VARIANTS[(position + offset) % len(VARIANTS)]


def reencode_item(item: ManifestItem, variant: Variant, out: Path) -> None:
    """Write `item`'s media as `variant` at `out` (atomically: complete or absent)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    inputs = ["-i", str(item.media)]
    maps = []
    if item.video is not None:
        maps += ["-map", "0:v:0"]
        if item.audio is not None:
            inputs += ["-i", str(item.audio)]
            maps += ["-map", "1:a:0"]
        else:
            maps += ["-map", "0:a:0?"]  # a silent video stays silent
    else:
        maps += ["-map", "0:a:0"]
    video = []
    if item.video is not None:
        scale = f"fps={variant.fps:g},scale={variant.width}:{variant.height}:flags=bicubic,setsar=1"
        video = ["-vf", scale, *video_args(variant.format, CRF)]
    audio = audio_args(variant.format, variant.sample_rate, variant.channels)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".work-") as tmp:
        part = Path(tmp) / f"clip{variant.format.suffix}"
        run_tool([*ffmpeg_base(), *inputs, *maps, *video, *audio,
                  "-f", variant.format.muxer, str(part)], timeout=300)  # fmt: skip
        os.replace(part, out)


def _job(item: ManifestItem, variant: Variant, media: str, overwrite: bool) -> bool:
    out = Path(media) / f"{item.id}{variant.format.suffix}"
    if overwrite or not out.is_file():
        reencode_item(item, variant, out)
        return True
    return False


def _record(item: ManifestItem, variant: Variant) -> dict[str, Any]:
    meta = dict(item.meta)
    meta.update(
        fps=variant.fps if item.video is not None else None,
        width=variant.width if item.video is not None else None,
        height=variant.height if item.video is not None else None,
        sample_rate=variant.sample_rate,
        channels=variant.channels,
        variant=variant.name,
    )
    key = "video" if item.video is not None else "audio"
    return {
        "id": item.id,
        key: f"media/{item.id}{variant.format.suffix}",
        "captions": {kind: list(texts) for kind, texts in item.captions.items()},
        "split": item.split,
        "meta": meta,
    }


def reencode_corpus(
    manifest: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    split: str | None = "test",
    seed: int = 0,
    workers: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Re-encode every item of `split` (None: all) and write out_dir/manifest.jsonl."""
    require_tools(("ffmpeg",))
    items = load_manifest(manifest, splits=None if split is None else [split])
    if not items:
        raise ValueError(f"{manifest} has no items in split {split!r}")
    out = Path(out_dir)
    media = out / "media"
    media.mkdir(parents=True, exist_ok=True)
    variants = [variant_for(i, seed) for i in range(len(items))]
    failures: list[str] = []
    workers = max(1, workers or min(2, os.cpu_count() or 1))
    with ProcessPoolExecutor(max_workers=workers) as pool:
        jobs = {
            pool.submit(_job, item, v, str(media), overwrite): item.id
            for item, v in zip(items, variants, strict=True)
        }
        for job in as_completed(jobs):
            try:
                job.result()
            except (ToolError, OSError, subprocess.SubprocessError) as e:
                failures.append(f"{jobs[job]}: {e}")
    if failures:
        raise RuntimeError(
            f"{len(failures)} of {len(items)} items failed (finished ones are kept; rerun to "
            "resume):\n" + "\n".join(failures[:5])
        )
    path = out / "manifest.jsonl"
    part = out / ".manifest.jsonl.part"
    with open(part, "w", encoding="utf-8") as f:
        for item, v in zip(items, variants, strict=True):
            f.write(json.dumps(_record(item, v), ensure_ascii=False) + "\n")
    os.replace(part, path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.foreign.reencode", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--manifest", required=True, help="the own corpus's manifest.jsonl")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--split", default="test", help="split to re-encode ('all' for every one)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None, help="processes (default: 2)")
    parser.add_argument("--overwrite", action="store_true", help="re-encode existing files")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        path = reencode_corpus(
            args.manifest,
            args.out,
            split=None if args.split == "all" else args.split,
            seed=args.seed,
            workers=args.workers,
            overwrite=args.overwrite,
        )
    except (ValueError, RuntimeError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    count = len(path.read_text(encoding="utf-8").splitlines())
    seconds = time.perf_counter() - start
    print(f"{count} items re-encoded in {seconds:.1f} s → {path}")
    print(json.dumps({"items": count, "seconds": round(seconds, 2), "manifest": str(path)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
