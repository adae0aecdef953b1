"""What each clip's sounds are measured to be (`models.timbre.sound_runs`), decoded apart from
the feature cache (which keeps log-mel spectra, not waveforms).

`read_all` measures files in worker processes, each as heard and, where asked, once more heard
otherwise (`heard_otherwise`: another speed, room and microphone), which is what the attribute
phase fits the timbre reader on. `clip_timbres` keeps what it measured beside a feature cache
(`memo_name` in its directory), so a pool measured once is read back after. A file that fails to
decode is reported and left unread (its sounds unknown), never read as silence.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from models.media import MediaError, decode_audio
from models.timbre import ROW, SAMPLE_RATE, sound_runs
from training.augment import AugmentConfig, augment_audio
from training.datasets import ManifestItem
from training.memo import in_workers, measured_rows

log = logging.getLogger(__name__)

# 1: `models.timbre` as first built (2026-12-06)
TIMBRES_VERSION = 1
# How much faster or slower a sound is heard otherwise (its pitch moving with it).
SPEEDS = (0.8, 1.25)
# The room and microphone it is heard through otherwise: every one of the training
# augmentation's changes (reverberation, EQ, low-pass, noise, gain) may be drawn.
HEARD_OTHERWISE = AugmentConfig(p=1.0, visual=False)


def heard_otherwise(audio: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """`audio` played at a speed drawn from `SPEEDS` (resampled: shorter or longer, higher or
    lower), then through a room and a microphone drawn as the training augmentation draws them."""
    speed = float(np.exp(rng.uniform(*np.log(SPEEDS))))
    n = max(int(len(audio) / speed), 1)
    played = np.interp(np.arange(n) * speed, np.arange(len(audio)), audio).astype(np.float32)
    return augment_audio(played, sample_rate, rng, HEARD_OTHERWISE)


def measure(path: str, seeds: Sequence[int] = ()) -> list[np.ndarray] | str:
    """The file's `sound_runs` as heard, then once heard otherwise per seed; the reason where
    its sound does not decode."""
    try:
        audio, rate = decode_audio(path, sample_rate=SAMPLE_RATE)
    except MediaError as e:
        return f"{e.reason.value}: {e.message}"
    out = [sound_runs(audio, rate)]
    for seed in seeds:
        out.append(sound_runs(heard_otherwise(audio, rate, np.random.default_rng(seed)), rate))
    return out


def _job(job: tuple[str, tuple[int, ...]]) -> list[np.ndarray] | str:
    return measure(*job)


def read_all(
    paths: Sequence[Path], seeds: Sequence[Sequence[int]], workers: int | None = None
) -> Iterator[list[np.ndarray] | str]:
    """`measure` of each path with its seeds, in worker processes, in order."""
    jobs = [(str(p), tuple(int(s) for s in ss)) for p, ss in zip(paths, seeds, strict=True)]
    return in_workers(_job, jobs, workers, chunksize=8)


def sound_path(item: ManifestItem) -> Path | None:
    """The file an item's sound is in: its own audio file, else its video's."""
    return item.audio if item.audio is not None else item.video


def memo_name() -> str:
    """The file a feature cache's directory keeps its clips' sound runs in."""
    return f"timbres-v{TIMBRES_VERSION}.npz"


def clip_timbres(
    items: Sequence[ManifestItem], directory: Path | None = None, workers: int | None = None
) -> dict[str, np.ndarray]:
    """Item id → its `sound_runs` rows (as heard), for the items whose sound decodes; measured
    once and kept in `directory` (a feature cache's) where given."""
    return measured_rows(
        items,
        None if directory is None else Path(directory) / memo_name(),
        sound_path,
        lambda paths: read_all(paths, [()] * len(paths), workers),
        ROW,
        "sounds",
    )
