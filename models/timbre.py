"""What each sound in a clip is, measured from its waveform: how it starts, how long it lasts,
whether it is a tone or a noise, where its pitch goes.

The sound what network learned this generator's waveforms: it names the kind of 1.00 of own val
single sources, 0.82 of the own test pool's (whose held-out kind × size pairs it never heard) and
0.41 of a corpus synthesised another way (docs/quality-log.md). What tells the
world's sounds apart (shared/SYNTHAV.md) is not a matter of one synthesiser: a thud is a short dull
noise burst, a ding a long-decaying set of inharmonic partials, a boom a falling tone, a chirp a
fast rising one, a tick a very short click, a hum a continuous harmonic tone with vibrato, a siren
two alternating tones. Those are measured here, from a short-time spectrum:

- The background (rain, wind, hiss) is each frequency's quiet level over the clip (a low
  percentile in time, taken as a noise's mean), held to a few times the floor beside it so that
  a held tone's narrow lines are not taken for it. A frame's foreground is what stands above it.
- Frames whose foreground stands clearly above the background are active; runs of active frames,
  short gaps bridged, are a clip's sounds (`runs`). A continuous sound is one long run.
- Each run gives `RUN_FEATURES` numbers (`run_features`): its length, how fast it rises and decays,
  how much of it is tonal and how peaked its spectrum is, its pitch's slope and how often it jumps,
  its spectral centre and spread, how many partials it has and how harmonic they are, and how
  steady its loudness is; and the clip's share of active time.

A small reader of them (`TimbreReader`: one hidden layer of `HIDDEN`, fitted by the trainer's
attribute phase on single-source training clips, each heard as it is and once more at another
speed, in another room, through another microphone) gives each run's chance of each kind and
size (`models.what_net.CLASSES`: kind × size, the sound's pitch telling its size); a clip's chance
is its runs' mean (`TimbreReader.clip_chances`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from models.what_net import CLASSES as KIND_SIZES

SAMPLE_RATE = 16_000
N_FFT = 512  # 32 ms
HOP = 128  # 8 ms
FRAME_S = HOP / SAMPLE_RATE
# A frame's foreground: its power above ABOVE × the background's mean. A frame is active where
# its foreground stands ACTIVE_DB above the background's energy (a steady noise alone: about
# −2 dB) and within RANGE_DB of the clip's loudest frame. Chosen on the `--variety` corpus's val
# and train clips, single sources' kinds named (0.88 / 0.86; 1 × and 6 dB: 0.90 / 0.84, both
# named of two sources 0.30 / 0.29 against 0.35 / 0.36).
ABOVE = 0.5
ACTIVE_DB = 3.0
RANGE_DB = 40.0
# Gaps of active frames shorter than this are bridged; runs shorter than MIN_RUN_S dropped.
BRIDGE_S = 0.04
MIN_RUN_S = 0.016
# The background: each frequency's BACKGROUND_PERCENTILE in time, but at most FLOOR_RATIO × the
# floor of its neighbourhood (the same percentile across FLOOR_BINS bins): a held tone or a
# hum's harmonics, narrow lines far above the floor beside them, are not taken for background.
# Noise's power in one bin of a short-time spectrum is exponentially distributed, so its
# BACKGROUND_PERCENTILE is NOISE_QUANTILE × its mean: the background is that percentile over it.
BACKGROUND_PERCENTILE = 20.0
NOISE_QUANTILE = float(-np.log(1 - BACKGROUND_PERCENTILE / 100))
FLOOR_BINS = 31
FLOOR_RATIO = 4.0
# At most this many runs of a stretch are measured (the loudest), so a clip of clicks stays
# cheap; a recording longer than STRETCH_S is measured a stretch at a time (`sound_runs`).
MAX_RUNS = 24
STRETCH_S = 30.0
LOW_HZ = 60.0
RUN_FEATURES = 16
# A run's row (`sound_runs`): its energy's share of the clip's, its start in seconds, its features.
ROW = 2 + RUN_FEATURES
HIDDEN = 16
EPS = 1e-10


def _spectrum(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """(T, F) power of `audio` resampled to `SAMPLE_RATE` by linear interpolation (the decoder
    gives 16 kHz already; another rate is rare here)."""
    x = np.asarray(audio, np.float32).reshape(-1)
    if not np.isfinite(x).all():
        raise ValueError("audio holds values that are not finite")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    if sample_rate != SAMPLE_RATE and x.size:
        n = max(round(x.size * SAMPLE_RATE / sample_rate), 1)
        x = np.interp(np.linspace(0, x.size - 1, n), np.arange(x.size), x).astype(np.float32)
    if x.size < N_FFT:
        x = np.pad(x, (0, N_FFT - x.size))
    # torch's short-time transform: the same frames and window as numpy's, 4 × as fast
    found = torch.stft(
        torch.from_numpy(np.ascontiguousarray(x)),
        N_FFT,
        HOP,
        window=torch.hann_window(N_FFT, periodic=False),
        center=False,
        return_complex=True,
    )
    return (found.abs() ** 2).T.contiguous().numpy()


def _percentile(rows: np.ndarray, q: float) -> np.ndarray:
    """(R,) each row's `q`th percentile, interpolated between its two nearest ranks as
    `np.percentile` does, by a partial sort (7 × as fast on a clip's spectrum)."""
    n = rows.shape[1]
    at = q / 100 * (n - 1)
    lo = int(np.floor(at))
    hi = min(lo + 1, n - 1)
    ranked = np.partition(rows, (lo, hi), axis=1)
    return ranked[:, lo] + (at - lo) * (ranked[:, hi] - ranked[:, lo])


def _floor_across(x: np.ndarray, width: int) -> np.ndarray:
    half = width // 2
    padded = np.pad(x, (half, half), mode="edge")
    window = np.lib.stride_tricks.sliding_window_view(padded, width)
    return _percentile(window, BACKGROUND_PERCENTILE)


def background(power: np.ndarray) -> np.ndarray:
    """(F,) each frequency's mean background power: its quiet level in time (as a noise's mean),
    held to a few times its neighbourhood's floor (a steady sound's lines are not background; a
    steady noise is)."""
    quiet = _percentile(np.ascontiguousarray(power.T), BACKGROUND_PERCENTILE) / NOISE_QUANTILE
    return np.minimum(quiet, FLOOR_RATIO * _floor_across(quiet, FLOOR_BINS))


def runs(active: np.ndarray) -> list[tuple[int, int]]:
    """[(start, stop)) of the runs of True in `active`, gaps under `BRIDGE_S` bridged and runs
    under `MIN_RUN_S` dropped."""
    bridge = max(round(BRIDGE_S / FRAME_S), 0)
    shortest = max(round(MIN_RUN_S / FRAME_S), 1)
    idx = np.flatnonzero(active)
    if idx.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(idx) > bridge + 1)
    starts = np.concatenate([[idx[0]], idx[breaks + 1]])
    stops = np.concatenate([idx[breaks], [idx[-1]]]) + 1
    return [(int(a), int(b)) for a, b in zip(starts, stops, strict=True) if b - a >= shortest]


def _slope(y: np.ndarray, w: np.ndarray) -> float:
    """The weighted least-squares slope of `y` per frame (0 for fewer than 3 frames)."""
    if y.size < 3 or w.sum() <= 0:
        return 0.0
    t = np.arange(y.size, dtype=np.float64)
    tm = (w * t).sum() / w.sum()
    ym = (w * y).sum() / w.sum()
    var = (w * (t - tm) ** 2).sum()
    return float((w * (t - tm) * (y - ym)).sum() / var) if var > 0 else 0.0


def run_features(
    fg: np.ndarray, energy_db: np.ndarray, freqs: np.ndarray, start: int, stop: int, duty: float
) -> np.ndarray:
    """`RUN_FEATURES` numbers of one run of foreground frames `fg[start:stop]` (power above the
    background), `energy_db` each frame's foreground level over the background's."""
    seg = fg[start:stop]
    level = energy_db[start:stop]
    n = stop - start
    peak = int(np.argmax(level))
    top = level[peak]
    # rise: frames from the start to the peak; decay: from the peak to 20 dB below it (or the end)
    below = np.flatnonzero(level[peak:] < top - 20.0)
    decay = (below[0] if below.size else n - peak) * FRAME_S
    rise = peak * FRAME_S
    total = seg.sum(axis=1) + EPS  # (n,)
    w = np.sqrt(total)
    # tonality: each frame's spectral flatness (geometric over arithmetic mean), and the share
    # of its energy in its strongest bin and the two beside it
    flat = np.exp(np.log(seg + EPS).mean(axis=1)) / (seg.mean(axis=1) + EPS)
    strongest = np.argmax(seg, axis=1)
    padded = np.pad(seg, ((0, 0), (1, 1)))
    rows = np.arange(n)
    peaked = (
        padded[rows, strongest] + padded[rows, strongest + 1] + padded[rows, strongest + 2]
    ) / total
    # the pitch: the strongest bin's frequency in octaves; its slope (octaves a second) and how
    # often it jumps by more than a third of an octave between frames
    pitch = np.log2(np.maximum(freqs[strongest], LOW_HZ))
    slope = _slope(pitch, w) / FRAME_S
    jumps = float((np.abs(np.diff(pitch)) > 1 / 3).mean()) if n > 1 else 0.0
    # the run's mean spectrum: its centre and spread in octaves, its partials (local maxima
    # within 30 dB of its strongest) and how far they sit on the first one's multiples
    mean = seg.mean(axis=0)
    octaves = np.log2(np.maximum(freqs, LOW_HZ))
    p = mean / (mean.sum() + EPS)
    centre = float((p * octaves).sum())
    spread = float(np.sqrt((p * (octaves - centre) ** 2).sum()))
    db = 10 * np.log10(mean + EPS)
    local = (db[1:-1] > db[:-2]) & (db[1:-1] >= db[2:]) & (db[1:-1] > db.max() - 30.0)
    peaks = np.flatnonzero(local) + 1
    partials = float(np.log1p(peaks.size))
    if peaks.size >= 2:
        f0 = freqs[peaks[0]]
        ratio = freqs[peaks[1:]] / max(f0, EPS)
        harmonic = float(np.mean(np.abs(ratio - np.round(ratio)) < 0.08))
    else:
        harmonic = 0.0
    steady = float(np.std(level) / (np.abs(np.mean(level)) + 1.0))
    return np.array(
        [
            np.log(n * FRAME_S),
            np.log(rise + FRAME_S),
            np.log(decay + FRAME_S),
            float(np.mean(flat)),
            float(np.mean(peaked)),
            float(np.clip(slope, -40.0, 40.0)) / 10.0,
            float(np.mean(np.abs(np.diff(pitch)))) if n > 1 else 0.0,
            jumps,
            centre - 10.0,
            spread,
            partials,
            harmonic,
            steady,
            float(np.mean(level)) / 20.0,
            duty,
            float(np.std(pitch)),
        ],
        np.float32,
    )


def sound_runs(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """(R, `ROW`) float32: each run's weight (its foreground energy, a share of its stretch's),
    its start in seconds, then its `run_features`; (0, …) for a clip without a sound standing
    above its background (silence, or a steady noise alone). A long recording is measured in
    stretches of `STRETCH_S` (a shorter tail joins the stretch before it), each against its own
    background, so its memory stays that of one stretch's spectrum."""
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    x = np.asarray(audio, np.float32)
    if x.ndim != 1:
        raise ValueError(f"expected mono audio (N,), got {x.shape}")
    step = int(STRETCH_S * sample_rate)
    starts = list(range(0, max(len(x) - step // 2, 1), step))
    found = []
    for k, start in enumerate(starts):
        stop = starts[k + 1] if k + 1 < len(starts) else len(x)
        rows = _stretch_runs(x[start:stop], sample_rate)
        rows[:, 1] += start / sample_rate
        found.append(rows)
    return np.concatenate(found) if found else np.zeros((0, ROW), np.float32)


def _stretch_runs(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """`sound_runs` of one stretch, its starts from its own beginning."""
    power = _spectrum(audio, sample_rate)
    freqs = np.fft.rfftfreq(N_FFT, 1 / SAMPLE_RATE)
    keep = freqs >= LOW_HZ
    power, freqs = power[:, keep], freqs[keep]
    base = background(power)
    fg = np.maximum(power - ABOVE * base, 0.0)
    energy_db = 10 * np.log10((fg.sum(axis=1) + EPS) / (base.sum() + EPS))
    active = (energy_db > ACTIVE_DB) & (energy_db > energy_db.max() - RANGE_DB)
    found = runs(active)
    if not found:
        return np.zeros((0, ROW), np.float32)
    duty = float(sum(b - a for a, b in found)) / max(len(active), 1)
    mass = np.array([fg[a:b].sum() for a, b in found])
    order = np.argsort(-mass)[:MAX_RUNS]
    out = np.zeros((order.size, ROW), np.float32)
    for k, j in enumerate(sorted(order.tolist())):
        a, b = found[j]
        out[k, 0] = mass[j] / (mass[order].sum() + EPS)
        out[k, 1] = a * FRAME_S
        out[k, 2:] = run_features(fg, energy_db, freqs, a, b, duty)
    return out


class TimbreReader(nn.Module):
    """Each run's chance of each kind × size (`KIND_SIZES`, a softmax) from its standardised
    `RUN_FEATURES`: a layer of `HIDDEN` tanh units, then a linear one. `fitted` is 1 once the
    attribute phase fitted it; a checkpoint from before has none (it loads unfitted)."""

    mean: Tensor
    scale: Tensor
    fitted: Tensor

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(RUN_FEATURES, HIDDEN), nn.Tanh(), nn.Linear(HIDDEN, len(KIND_SIZES))
        )
        self.register_buffer("mean", torch.zeros(RUN_FEATURES))
        self.register_buffer("scale", torch.ones(RUN_FEATURES))
        self.register_buffer("fitted", torch.zeros(()))

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict,
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        # a checkpoint from before the reader, or of one over other numbers: unfitted
        first = state_dict.get(prefix + "net.0.weight")
        hidden = self.net[0]
        assert isinstance(hidden, nn.Linear)
        if first is not None and tuple(first.shape) != tuple(hidden.weight.shape):
            for key in [k for k in state_dict if k.startswith(prefix)]:
                state_dict.pop(key)
        for name, value in self.state_dict().items():
            state_dict.setdefault(prefix + name, value)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    @property
    def is_fitted(self) -> bool:
        return bool(self.fitted.item() > 0)

    def logits(self, features: Tensor) -> Tensor:
        """(R, `RUN_FEATURES`) → (R, len(KIND_SIZES))."""
        return self.net((features.float() - self.mean) / self.scale)

    def run_chances(self, features: np.ndarray) -> np.ndarray:
        """(R, len(KIND_SIZES)) each run's chances (a softmax)."""
        x = torch.as_tensor(np.asarray(features, np.float32)).reshape(-1, RUN_FEATURES)
        with torch.no_grad():
            return torch.softmax(self.logits(x.to(self.mean.device)), dim=-1).cpu().numpy()

    def clip_chances(self, rows: np.ndarray) -> np.ndarray:
        """(len(KIND_SIZES),) a clip's chance of each kind × size from its `sound_runs` rows: the
        runs' mean (one run of a continuous sound counts as much as one click; with two sources,
        measured on val splits, this names both more often than weighing runs by their energy
        or length); NaN where it has none (nothing stood above the background) or the reader is
        not fitted."""
        rows = np.asarray(rows, np.float32).reshape(-1, ROW)
        if not len(rows) or not self.is_fitted:
            return np.full(len(KIND_SIZES), np.nan, np.float32)
        return self.run_chances(rows[:, 2:]).mean(axis=0).astype(np.float32)
