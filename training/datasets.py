"""Manifests and converters: SynthAV (native), the AVCaps layout, a folder of videos with a CSV.

A manifest is JSONL, one item per line (DESIGN.md):
`{"id", "video", "audio"?, "captions": {"visual": [...], "audio": [...], "audiovisual": [...]},
  "split", "meta"}` with paths relative to the manifest. An item may be video with audio, silent
video, or audio only.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CAPTION_KINDS = ("visual", "audio", "audiovisual")
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".ts")
# Spellings of the three caption kinds met in the wild (AVCaps files, CSV columns).
_KIND_ALIASES = {
    "visual": "visual",
    "visual_captions": "visual",
    "video": "visual",
    "audio": "audio",
    "audio_captions": "audio",
    "sound": "audio",
    "audiovisual": "audiovisual",
    "audio_visual": "audiovisual",
    "audio-visual": "audiovisual",
    "audio_visual_captions": "audiovisual",
    "audiovisual_captions": "audiovisual",
    "av": "audiovisual",
    "caption": "audiovisual",
    "captions": "audiovisual",
}


class ManifestError(ValueError):
    """A manifest line that cannot be used, with its file and line number."""


@dataclass(frozen=True)
class ManifestItem:
    id: str
    video: Path | None
    audio: Path | None
    captions: dict[str, tuple[str, ...]]
    split: str
    meta: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def media(self) -> Path:
        """The file holding the item's media (the separate audio file for audio-only items)."""
        path = self.video or self.audio
        assert path is not None
        return path


def _parse_line(record: Any, base: Path, where: str) -> ManifestItem:
    if not isinstance(record, dict):
        raise ManifestError(f"{where}: expected a JSON object")
    item_id = record.get("id")
    if not isinstance(item_id, str) or not item_id:
        raise ManifestError(f"{where}: 'id' must be a non-empty string")
    paths: dict[str, Path | None] = {}
    for key in ("video", "audio"):
        value = record.get(key)
        if value is not None and not isinstance(value, str):
            raise ManifestError(f"{where}: '{key}' must be a path string")
        paths[key] = (base / value) if value else None
    if paths["video"] is None and paths["audio"] is None:
        raise ManifestError(f"{where}: an item needs 'video' or 'audio'")
    raw = record.get("captions", {}) or {}
    if not isinstance(raw, dict):
        raise ManifestError(f"{where}: 'captions' must be an object of lists")
    captions: dict[str, tuple[str, ...]] = {k: () for k in CAPTION_KINDS}
    for key, texts in raw.items():
        kind = _KIND_ALIASES.get(key)
        if kind is None:
            raise ManifestError(f"{where}: unknown caption kind {key!r}")
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise ManifestError(f"{where}: captions.{key} must be a list of strings")
        captions[kind] = captions[kind] + tuple(t.strip() for t in texts if t.strip())
    split = record.get("split", "train")
    meta = record.get("meta", {}) or {}
    return ManifestItem(item_id, paths["video"], paths["audio"], captions, str(split), dict(meta))


def load_manifest(
    path: str | os.PathLike[str], splits: Iterable[str] | None = None
) -> list[ManifestItem]:
    """Read a manifest; refuse malformed lines and duplicate ids with the line number."""
    path = Path(path)
    wanted = set(splits) if splits is not None else None
    items: list[ManifestItem] = []
    seen: set[str] = set()
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{n}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ManifestError(f"{where}: not JSON ({e.msg})") from e
            item = _parse_line(record, path.parent, where)
            if item.id in seen:
                raise ManifestError(f"{where}: duplicate id {item.id!r}")
            seen.add(item.id)
            if wanted is None or item.split in wanted:
                items.append(item)
    return items


def write_manifest(items: Iterable[dict[str, Any]], out: str | os.PathLike[str]) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.part")
    with open(tmp, "w", encoding="utf-8") as f:
        for record in items:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    os.replace(tmp, out)
    return out


def _relative(path: Path, base: Path) -> str:
    return os.path.relpath(path.resolve(), base.resolve())


def _find_video(folder: Path, stem: str) -> Path | None:
    for suffix in VIDEO_SUFFIXES:
        candidate = folder / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    direct = folder / stem
    return direct if direct.is_file() else None


def _avcaps_records(data: Any) -> Iterable[tuple[str, dict[str, Any]]]:
    """AVCaps caption files come as {video_id: {...}} or as a list of {video_id|id|file, ...}."""
    if isinstance(data, dict):
        yield from ((str(k), v) for k, v in data.items())
    elif isinstance(data, list):
        for entry in data:
            key = (
                entry.get("video_id") or entry.get("id") or entry.get("file") or entry.get("video")
            )
            if key is None:
                raise ManifestError("an AVCaps entry has no video_id/id/file field")
            yield str(key), entry
    else:
        raise ManifestError("an AVCaps caption file must hold an object or a list")


def convert_avcaps(
    root: str | os.PathLike[str], out: str | os.PathLike[str]
) -> tuple[Path, list[str]]:
    """AVCaps layout → manifest. `root` holds `{split}_captions.json` and the videos (in `root`,
    `root/videos` or `root/{split}`). Returns the manifest path and the ids whose video is missing
    (they are left out, and listed, not silently dropped)."""
    root = Path(root)
    out = Path(out)
    records, missing = [], []
    files = sorted(root.glob("*_captions.json"))
    if not files:
        raise FileNotFoundError(f"no {{split}}_captions.json files in {root}")
    for caption_file in files:
        split = caption_file.name.removesuffix("_captions.json")
        data = json.loads(caption_file.read_text(encoding="utf-8"))
        for key, entry in _avcaps_records(data):
            stem = Path(key).stem if Path(key).suffix in VIDEO_SUFFIXES else key
            video = next(
                (v for d in (root / "videos", root / split, root) if (v := _find_video(d, stem))),
                None,
            )
            if video is None:
                missing.append(key)
                continue
            captions = {k: entry[k] for k in entry if k in _KIND_ALIASES and k not in ("video",)}
            records.append(
                {
                    "id": stem,
                    "video": _relative(video, out.parent),
                    "captions": captions,
                    "split": split,
                    "meta": {"source": "avcaps"},
                }
            )
    return write_manifest(records, out), missing


def convert_folder(
    folder: str | os.PathLike[str],
    captions_csv: str | os.PathLike[str],
    out: str | os.PathLike[str],
    split: str = "train",
) -> tuple[Path, list[str]]:
    """A folder of videos + a CSV with columns `file,caption[,kind][,split]` → manifest.

    Rows without a kind count as audiovisual captions. Returns the manifest path and the files
    named in the CSV that do not exist.
    """
    folder, out = Path(folder), Path(out)
    by_file: dict[str, dict[str, Any]] = {}
    missing: list[str] = []
    with open(captions_csv, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"file", "caption"} <= set(reader.fieldnames):
            raise ManifestError(f"{captions_csv}: needs the columns 'file' and 'caption'")
        for row in reader:
            name = row["file"].strip()
            video = folder / name
            if not video.is_file() or video.resolve().parent != folder.resolve():
                if name not in missing:
                    missing.append(name)
                continue
            kind = _KIND_ALIASES.get((row.get("kind") or "audiovisual").strip().lower())
            if kind is None:
                raise ManifestError(f"{captions_csv}: unknown caption kind {row.get('kind')!r}")
            entry = by_file.setdefault(
                name,
                {
                    "id": Path(name).stem,
                    "video": _relative(video, out.parent),
                    "captions": {k: [] for k in CAPTION_KINDS},
                    "split": (row.get("split") or split).strip(),
                    "meta": {"source": "folder"},
                },
            )
            entry["captions"][kind].append(row["caption"].strip())
    return write_manifest(by_file.values(), out), missing
