"""Writing SynthAV: encode clips as real media files (PyAV) on all cores, then the manifest.

Each file is written under a temporary name and renamed, so a file that exists is complete, and an
interrupted run resumes by skipping them (when the corpus config is the same).
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, cast

import av
import numpy as np
from av.audio.stream import AudioStream
from av.video.stream import VideoStream

from training.synthav.plan import CorpusPlan, PlannedClip, plan_corpus
from training.synthav.render import render_frames
from training.synthav.sound import render_audio
from training.synthav.variety import clip_render_config
from training.synthav.world import ClipSpec, GeneratorConfig, RenderConfig, Role, SourceSpec

FORMAT_VERSION = 1
# container, video codec, audio codec, extension
FORMATS = {
    "mp4": ("mp4", "libx264", "aac", ".mp4"),
    "webm": ("webm", "libvpx-vp9", "libopus", ".webm"),
    "mkv": ("matroska", "libx264", "flac", ".mkv"),
}
_VIDEO_OPTIONS = {
    # Single-threaded encoders: the corpus is parallel across clips, and x264 output is only
    # reproducible for a fixed thread count.
    "libx264": {"preset": "veryfast", "crf": "20", "threads": "1"},
    "libvpx-vp9": {"deadline": "realtime", "cpu-used": "8", "crf": "32", "b": "0", "threads": "1"},
}
_AUDIO_FRAME = 1024


def encode_clip(
    path: Path, frames: np.ndarray, audio: np.ndarray, cfg: RenderConfig, crf: int | None = None
) -> None:
    """Write frames uint8 (T, H, W, 3) and audio float32 (C, N) as one media file, atomically.

    `crf` overrides the video codec's quality (higher: more compression artefacts).
    """
    container, vcodec, acodec, _ = FORMATS[cfg.format]
    tmp = path.with_name(f".{path.name}.part")
    layout = "stereo" if audio.shape[0] == 2 else "mono"
    with av.open(str(tmp), mode="w", format=container) as out:
        v = cast(
            VideoStream, out.add_stream(vcodec, rate=Fraction(cfg.fps).limit_denominator(1001))
        )
        v.width, v.height, v.pix_fmt = cfg.width, cfg.height, "yuv420p"
        options: dict[str, object] = dict(_VIDEO_OPTIONS[vcodec])
        if crf is not None:
            options["crf"] = str(crf)
        v.options = options
        a = cast(AudioStream, out.add_stream(acodec, rate=cfg.sample_rate, layout=layout))
        if acodec == "aac":
            a.bit_rate = 64_000 * audio.shape[0]
        for k, image in enumerate(frames):
            picture = av.VideoFrame.from_ndarray(image, format="rgb24")
            picture.pts = k
            out.mux(v.encode(picture))
        out.mux(v.encode(None))
        planar = np.ascontiguousarray(audio, dtype=np.float32)
        for start in range(0, planar.shape[1], _AUDIO_FRAME):
            chunk = np.ascontiguousarray(planar[:, start : start + _AUDIO_FRAME])
            sound = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
            sound.sample_rate = cfg.sample_rate
            sound.pts = start
            out.mux(a.encode(sound))
        out.mux(a.encode(None))
    os.replace(tmp, path)


def media_name(spec: ClipSpec, cfg: RenderConfig) -> str:
    return f"media/{spec.id}{FORMATS[clip_render_config(spec, cfg).format][3]}"


def _render_one(job: tuple[ClipSpec, RenderConfig, str]) -> str:
    spec, base, path = job
    cfg = clip_render_config(spec, base)
    crf = spec.seen_variety.look.crf if spec.seen_variety is not None else None
    encode_clip(Path(path), render_frames(spec, cfg), render_audio(spec, cfg), cfg, crf)
    return spec.id


def _source_meta(s: SourceSpec, seen: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": s.kind.value}
    if seen:
        out |= {"colour": s.colour, "direction": s.direction}
    out |= {"size": s.size, "tempo": s.tempo, "role": s.role.value, "events": list(s.events)}
    return out


def manifest_record(clip: PlannedClip, cfg: RenderConfig) -> dict[str, Any]:
    """One manifest line in DESIGN.md's format."""
    spec = clip.spec
    heard = spec.audio_clip
    name = media_name(spec, cfg)
    cfg = clip_render_config(spec, cfg)
    meta: dict[str, Any] = {
        "generator": "synthav",
        "duration_s": cfg.duration_s,
        "fps": cfg.fps,
        "width": cfg.width,
        "height": cfg.height,
        "sample_rate": cfg.sample_rate,
        "channels": 2 if cfg.stereo else 1,
        "scene": spec.scene,
        "ambience": spec.ambience,
        "count": sum(1 for s in spec.sources if s.role is Role.MAIN),
        "sources": [_source_meta(s) for s in spec.sources],
        "audio": {
            "ambience": heard.ambience,
            "sources": [_source_meta(s, seen=False) for s in heard.sources if s.audible],
        },
        "offscreen": any(s.role is Role.OFFSCREEN for s in spec.sources),
        "silent_object": any(s.role is Role.SILENT for s in spec.sources),
        "misaligned": spec.audio_donor is not None,
        "audio_from": spec.audio_donor.id if spec.audio_donor is not None else None,
        "heldout": spec.heldout,
        "twin_group": spec.twin_group,
    }
    # How it was drawn and voiced, for analysis; absent when off. With only a share of the train
    # clips varied, a plain clip can carry a varied donor's track (or the other way round).
    if spec.variety is not None or heard.variety is not None:
        meta["format"] = cfg.format
        # Opus always decodes at 48 kHz whatever rate it was fed: say what the file holds.
        meta["synth_sample_rate"] = cfg.sample_rate
        meta["sample_rate"] = 48_000 if cfg.format == "webm" else cfg.sample_rate
        meta["look"] = dataclasses.asdict(spec.seen_variety.look) if spec.seen_variety else None
        meta["voice"] = dataclasses.asdict(heard.variety.voice) if heard.variety else None
    return {
        "id": spec.id,
        "video": name,
        "captions": clip.captions,
        "split": spec.split,
        "meta": meta,
    }


@dataclass(frozen=True)
class CorpusSummary:
    out_dir: Path
    manifest: Path
    clips: int
    written: int  # files rendered this run (the rest were already there)
    seconds: float
    splits: dict[str, int]
    heldout: list[list[str]]
    flags: dict[str, int]
    val_heldout: list[list[str]] = dataclasses.field(default_factory=list)


def _config_record(cfg: GeneratorConfig) -> dict[str, Any]:
    record = {"format_version": FORMAT_VERSION, **dataclasses.asdict(cfg)}
    # A corpus made before an option existed resumes as the same corpus.
    if not cfg.variety:
        del record["variety"]
    if cfg.rich_captions is None:
        del record["rich_captions"]
    if not cfg.variety_share:
        del record["variety_share"]
    if cfg.variety_parts == "all":
        del record["variety_parts"]
    if not cfg.val_heldout_fraction:
        del record["val_heldout_fraction"]
    return record


def _check_out_dir(out: Path, record: dict[str, Any], overwrite: bool) -> None:
    """Resume a corpus made with the same settings; refuse (or, asked to, replace) any other."""
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out} exists and is not a directory")
    info = out / "synthav.json"
    if not info.exists():
        if out.exists() and any(out.iterdir()):
            raise FileExistsError(
                f"{out} is not empty and holds no SynthAV corpus; choose another directory"
            )
        return
    if overwrite:  # the directory is ours (it has synthav.json): clear what an older run wrote
        shutil.rmtree(out / "media", ignore_errors=True)
        return
    previous = json.loads(info.read_text()).get("config")
    if previous != record:
        raise FileExistsError(
            f"{out} holds a SynthAV corpus made with other settings; choose another directory "
            "or pass overwrite=True (--overwrite)"
        )


def _write_json_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_text(text)
    os.replace(tmp, path)


def _render_all(
    jobs: list[tuple[ClipSpec, RenderConfig, str]],
    workers: int,
    on_done: Callable[[str], None],
) -> None:
    if workers <= 1:
        for job in jobs:
            on_done(_render_one(job))
        return
    # spawn, not fork: the parent may hold threads (a progress bar) that fork copies half-alive.
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        for clip_id in pool.map(_render_one, jobs, chunksize=4):
            on_done(clip_id)


def generate_corpus(
    out_dir: str | os.PathLike[str],
    cfg: GeneratorConfig,
    *,
    workers: int | None = None,
    overwrite: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> CorpusSummary:
    """Plan and write a SynthAV corpus: `media/` files, `manifest.jsonl`, `synthav.json`."""
    start = time.perf_counter()
    out = Path(out_dir)
    record = _config_record(cfg)
    _check_out_dir(out, record, overwrite)
    (out / "media").mkdir(parents=True, exist_ok=True)
    plan: CorpusPlan = plan_corpus(cfg)
    _write_json_atomic(
        out / "synthav.json", json.dumps({"config": record, "complete": False}, indent=2)
    )

    jobs = []
    for clip in plan.clips:
        path = out / media_name(clip.spec, cfg.render)
        if overwrite or not path.exists():
            jobs.append((clip.spec, cfg.render, str(path)))
    done = cfg.clips - len(jobs)
    if on_progress:
        on_progress(done, cfg.clips)

    def tick(_: str) -> None:
        nonlocal done
        done += 1
        if on_progress:
            on_progress(done, cfg.clips)

    _render_all(jobs, workers or os.cpu_count() or 1, tick)

    lines = [json.dumps(manifest_record(c, cfg.render)) for c in plan.clips]
    _write_json_atomic(out / "manifest.jsonl", "\n".join(lines) + "\n")
    summary = _summarise(out, plan, len(jobs), time.perf_counter() - start)
    _write_json_atomic(
        out / "synthav.json",
        json.dumps(
            {
                "config": record,
                "complete": True,
                "heldout": summary.heldout,
                "val_heldout": summary.val_heldout,
                "splits": summary.splits,
                "flags": summary.flags,
            },
            indent=2,
        ),
    )
    return summary


def _summarise(out: Path, plan: CorpusPlan, written: int, seconds: float) -> CorpusSummary:
    splits = {s: 0 for s in ("train", "val", "test")}
    flags = {
        "offscreen": 0,
        "silent_object": 0,
        "misaligned": 0,
        "heldout": 0,
        "val_heldout": 0,
        "twins": 0,
    }
    for clip in plan.clips:
        spec = clip.spec
        splits[spec.split] += 1
        flags["offscreen"] += any(s.role is Role.OFFSCREEN for s in spec.sources)
        flags["silent_object"] += any(s.role is Role.SILENT for s in spec.sources)
        flags["misaligned"] += spec.audio_donor is not None
        flags["val_heldout" if spec.split == "val" else "heldout"] += spec.heldout
        flags["twins"] += spec.twin_group is not None
    return CorpusSummary(
        out_dir=out,
        manifest=out / "manifest.jsonl",
        clips=len(plan.clips),
        written=written,
        seconds=seconds,
        splits=splits,
        heldout=[list(p) for p in sorted(plan.heldout)],
        flags=flags,
        val_heldout=[list(p) for p in sorted(plan.val_heldout)],
    )


def read_manifest(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    with open(path) as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def corpus_config(out_dir: str | os.PathLike[str]) -> GeneratorConfig:
    """The settings a complete corpus directory was made with (its synthav.json)."""
    info = json.loads((Path(out_dir) / "synthav.json").read_text())
    if not info.get("complete"):
        raise ValueError(f"{out_dir} holds no complete SynthAV corpus")
    record = dict(info["config"])
    record.pop("format_version", None)
    record.setdefault("val_heldout_fraction", 0.0)  # a corpus made before the val split's pairs
    record["render"] = RenderConfig(**record["render"])
    return GeneratorConfig(**record)


def reword_corpus(out_dir: str | os.PathLike[str], rich_captions: bool) -> Path:
    """Write `manifest-rich.jsonl` (or `manifest-plain.jsonl`) beside a corpus's manifest: the
    same clips and media files with the captions the generator gives them under the other caption
    grammar. Captions draw from their own random stream, so nothing but the train split's captions
    changes (the val and test splits keep their reserved wordings); checked record by record, and
    the media need no re-rendering, nor the feature caches recomputing."""
    out = Path(out_dir)
    cfg = dataclasses.replace(corpus_config(out), rich_captions=rich_captions)
    plan = plan_corpus(cfg)
    current = list(read_manifest(out / "manifest.jsonl"))
    if len(current) != len(plan.clips):
        raise ValueError(f"{out}/manifest.jsonl does not match its synthav.json")
    lines = []
    for old, clip in zip(current, plan.clips, strict=True):
        new = json.loads(json.dumps(manifest_record(clip, cfg.render)))
        if {**new, "captions": None} != {**old, "captions": None}:
            raise ValueError(f"{clip.spec.id}: the re-planned clip differs from {out}'s")
        lines.append(json.dumps(new))
    path = out / f"manifest-{'rich' if rich_captions else 'plain'}.jsonl"
    _write_json_atomic(path, "\n".join(lines) + "\n")
    return path
