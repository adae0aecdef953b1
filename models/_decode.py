"""Turning an opened, validated container into arrays: the private half of `models.media`.

`media._open_media` hands over a container whose header passed every check; this module decodes
it, checking the same `MediaLimits` again on every frame because headers lie. Video is sampled
onto a fixed frame grid and scaled in FFmpeg with one reused scaler (`_VideoSampler`); audio is
checked for NaN/Inf and absurd peaks, resampled to mono float32 and placed on the shared timeline
(`_AudioCollector`); `_Session` runs the decode loop and `_check_complete` catches truncation.

Three PyAV failure modes found by fuzzing are avoided here: a deadlock between frame threads and
PyAV's log callback (`_thread_type`), a segfault reading 8-channel planar audio
(`_float_planes`) and an IndexError when a stream appears mid-file (`_packets`).

The types and header helpers come from `media`; `media` imports this module only inside its
`_decode`, so loading either module first never meets a half-initialised other.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import av
import av.logging
import numpy as np
from av.audio.fifo import AudioFifo
from av.audio.plane import AudioPlane
from av.container import InputContainer
from av.video.reformatter import VideoReformatter

from models.media import (
    DecodedMedia,
    Fit,
    MediaError,
    MediaLimits,
    _check_audio_format,
    _check_pixels,
    _declared_pixel_aspect,
    _declared_s,
    _failure,
    _Opened,
    _selected,
    _stream_rate,
)
from models.media import MediaErrorReason as R
from models.motion import (
    HALVES,
    half_sums,
    half_values,
    merged_centre,
    quadrant_centres,
    quadrant_centres_many,
    velocity_changes,
)

_EPS = 1e-6
# A frame time within this share of a grid step of a grid time is on it (`_on_grid`). Containers
# keep times in their own units: Matroska and WebM in milliseconds, so a 12 fps clip's frames lie
# at 0.083, 0.167, 0.25 s..., a third of them just before their grid time and a third just
# after. Taken as they are, the grid held a frame that rounds up for one target too long (shown a
# step late), and a pair of frames that rounds down counted its change a bin early. The val clips
# written as Matroska (h264 + FLAC, 12 fps, CRF 28; a `/tmp` probe, the checkpoint of the quality
# log's table): audio→video by envelopes alone, the picture's event network's envelope R@1 0.645 →
# 0.852, with its other envelopes 0.776 → 0.891 (the same clips in MP4, whose times are exact:
# 0.858 / 0.934 either way). A time a tenth of a step off is 8 ms at 12 fps: no timing error an
# envelope can see, and far wider than any container's rounding.
ON_GRID_SHARE = 0.1


def _on_grid(times: np.ndarray, fps: float) -> np.ndarray:
    """`times` (seconds) with each one within `ON_GRID_SHARE` of a step of a time j / fps moved
    onto it; the others as they are."""
    times = np.asarray(times, np.float64)
    steps = times * fps
    nearest = np.round(steps)
    return np.where(np.abs(steps - nearest) <= ON_GRID_SHARE, nearest / fps, times)


def _on_grid_time(t: float, fps: float) -> float:
    """`_on_grid` of one time, without an array: the sampler asks it of every decoded frame
    (0.3 µs instead of 3.8)."""
    steps = t * fps
    nearest = round(steps)
    return nearest / fps if abs(steps - nearest) <= ON_GRID_SHARE else t


_FLOAT_FORMATS = frozenset({"flt", "fltp", "dbl", "dblp"})
# Real audio stays within [-1, 1]; float files may overshoot, but not by 36 dB.
_MAX_ABS_SAMPLE = 64.0
# Input samples (per channel) gathered before they are resampled: 0.7 s at 48 kHz.
_RESAMPLE_RUN = 1 << 15
# Frame pairs whose differences are measured together (`_VideoSampler`): 32 of 64 × 64 RGB
# pictures are 384 KB.
_MEASURE_RUN = 32


def _scaled(
    rf: VideoReformatter, frame: av.VideoFrame, width: int | None = None, height: int | None = None
) -> np.ndarray:
    """Scale and convert in FFmpeg (swscale). One reformatter per decode keeps its scaler
    context: `frame.reformat` builds a new one per call, which costs 15x the conversion."""
    return rf.reformat(frame, width, height, "rgb24", interpolation="AREA").to_ndarray()


def _to_rgb(
    rf: VideoReformatter, frame: av.VideoFrame, size: tuple[int, int], fit: Fit, sar: float
) -> np.ndarray:
    """`(H, W, 3)` RGB. "pad" letterboxes with black, "stretch" ignores the aspect ratio, "crop"
    fills the target and cuts the overflow from the centre. `sar` makes non-square pixels
    (anamorphic DVD, HDV) keep their displayed shape."""
    height, width = size
    if fit == "stretch":
        return _scaled(rf, frame, width, height)
    shown_w = frame.width * sar
    scale = (min if fit == "pad" else max)(width / shown_w, height / frame.height)
    sw, sh = max(1, round(shown_w * scale)), max(1, round(frame.height * scale))
    if fit == "pad":
        sw, sh = min(sw, width), min(sh, height)
        out = np.zeros((height, width, 3), np.uint8)
        top, left = (height - sh) // 2, (width - sw) // 2
        out[top : top + sh, left : left + sw] = _scaled(rf, frame, sw, sh)
        return out
    sw, sh = max(sw, width), max(sh, height)
    top, left = (sh - height) // 2, (sw - width) // 2
    if scale <= 1:  # downscale whole frame, then cut: the intermediate is small
        return _scaled(rf, frame, sw, sh)[top : top + height, left : left + width]
    # Upscaling a sliver (e.g. 8000x16) would make a huge intermediate: cut at native size first.
    native = _scaled(rf, frame)
    y0, x0 = round(top / scale), round(left / scale / sar)
    part = native[
        y0 : y0 + max(1, round(height / scale)), x0 : x0 + max(1, round(width / scale / sar))
    ]
    return _scaled(
        rf,
        av.VideoFrame.from_ndarray(np.ascontiguousarray(part, dtype=np.uint8), format="rgb24"),
        width,
        height,
    )


class _VideoSampler:
    """Sample-and-hold onto t_j = j / fps: target j shows the last frame at or before t_j (the
    first frame for targets before it). fps None keeps every frame.

    In fps mode every decoded frame is also converted (at the target size) to measure how much
    the picture changes between consecutive frames, on the file's own timestamps: `changes[j]` is
    the largest mean absolute difference between a frame and the next among the frames that start
    in target j's interval (or, where none starts there, of the pair spanning it: `_per_target`).
    Measured on the sampled grid instead, a clip at another frame rate
    than the grid's changes by two source frames in one target interval and by none in the next
    (judder), and that pattern, not the clip's events, fills the change envelope
    (`models.events.picture_events`): a clip re-encoded at 25 or 30 fps kept 0.12 correlation
    with its own envelope. Converting every frame costs one scaled conversion per source frame
    instead of one per target frame."""

    def __init__(
        self,
        fps: float | None,
        size: tuple[int, int] | None,
        fit: Fit,
        sar: float,
        stills: _StillSampler | None = None,
    ) -> None:
        self.fps, self._size, self._fit, self._sar = fps, size, fit, sar
        # a second look at a few of the same frames (`DecodedMedia.stills`), fed every frame
        self.stills = stills
        self.out: list[np.ndarray] = []
        self.count = 0
        self._held: np.ndarray | None = None
        self._held_t = 0.0
        # each pair of consecutive file frames: (start, end), and how much their difference
        # changed, in all and per quadrant (2, 2)
        self._pairs: list[tuple[float, float]] = []
        self._pair_changes: list[float] = []
        self._pair_regions: list[np.ndarray] = []
        # and where in each quadrant it changed, for where the motion changes (`models.motion`):
        # (4, 3) per pair, `quadrant_centres`; merged into the whole picture's or a half's
        # centre once, for all pairs, when asked (`motion`, `halves`)
        self._pair_quadrants: list[np.ndarray] = []
        # differences waiting to be measured, `_MEASURE_RUN` at a time (`_measure`)
        self._waiting: np.ndarray | None = None
        self._waited = 0
        self._rf = VideoReformatter()

    def _convert(self, frame: av.VideoFrame) -> np.ndarray:
        if self._size is None:  # native size, fixed by the first frame so the stack is regular
            self._size = (frame.height, frame.width)
            return _scaled(self._rf, frame)
        return _to_rgb(self._rf, frame, self._size, self._fit, self._sar)

    def add(self, frame: av.VideoFrame, t: float) -> None:
        """`t` is seconds from the timeline origin."""
        self.count += 1
        if self.stills is not None:
            self.stills.add(frame, t)
        image = self._convert(frame)
        if self.fps is None:
            self.out.append(image)
            return
        if self._held is None:
            self._held = image
        else:
            if self._waiting is None:
                self._waiting = np.empty((_MEASURE_RUN, *image.shape), np.uint8)
            # |a - b| in uint8 without a wider copy, measured with the next ones (`_measure`)
            slot = self._waiting[self._waited]
            np.subtract(np.maximum(image, self._held), np.minimum(image, self._held), out=slot)
            self._waited += 1
            if self._waited == _MEASURE_RUN:
                self._measure()
            self._pairs.append((self._held_t, t))
        # target j shows this frame from t_j on, a frame a hair after t_j (a container's
        # rounding) at t_j already
        shown = _on_grid_time(t, self.fps)
        while len(self.out) / self.fps + _EPS < shown:
            self.out.append(self._held)
        self._held, self._held_t = image, t

    def _measure(self) -> None:
        """How much each waiting difference changed, in all and per quadrant, and where
        (`models.motion.quadrant_centres`): for pictures of even sides from one pair of matrix
        products over all of them (`half_sums`; exact integer sums, so the values are those of
        `_quadrant_sums` and `quadrant_centres` a picture at a time, bit for bit), else a
        picture at a time."""
        if not self._waited:
            return
        assert self._waiting is not None
        diffs, self._waited = self._waiting[: self._waited], 0
        size = diffs[0].size
        height, width = diffs.shape[1:3]
        h, w = height // 2, width // 2
        if not (height == 2 * h and width == 2 * w and h and w):
            self._measure_each(diffs)
            return
        halves = half_sums(diffs)
        rows = halves[0]  # (N, H, 2): each row's left and right sums
        quadrants = np.stack(
            [rows[:, :h, 0], rows[:, :h, 1], rows[:, h:, 0], rows[:, h:, 1]], axis=1
        ).sum(axis=2)  # (N, 4): top left, top right, bottom left, bottom right
        self._pair_changes.extend((quadrants.sum(axis=1) / (size * 255.0)).tolist())
        self._pair_regions.extend(quadrants / (float(size // 4) * 255.0))
        self._pair_quadrants.extend(quadrant_centres_many(diffs, halves))

    def _measure_each(self, diffs: np.ndarray) -> None:
        """`_measure` a picture at a time (odd sides: the quadrants' sums overlap there)."""
        for diff in diffs:
            sums, sizes, total = _quadrant_sums(diff)
            self._pair_changes.append(total / (diff.size * 255.0))
            self._pair_regions.append((sums / (np.maximum(sizes, 1) * 255.0)).reshape(4))
            self._pair_quadrants.append(quadrant_centres(diff))

    def finish(self, n: int) -> np.ndarray:
        """Stack `n` frames (fps mode), repeating the last one up to the end of the media."""
        self._measure()
        if self.fps is not None:
            assert self._held is not None
            while len(self.out) < n:
                self.out.append(self._held)
            del self.out[n:]
        return np.stack(self.out)

    def _per_target(self, values: np.ndarray, n: int) -> np.ndarray:
        """(n, ...) float32 from one value per frame pair: the largest among the pairs that
        start in each target frame's interval. A target interval in which no pair starts — a
        file slower than the grid (8 or 10 fps on a 12 fps grid) has one every few targets —
        takes the value of the pair that spans it: left at zero, those targets read as
        "nothing changed" at the file's own frame period, and that regular dip, not the events,
        filled the envelopes (re-encoded val clips at 10 fps: audio→video by envelopes alone
        R@1 0.04, 0.22 with the spanning pair's value). After the last pair: zero."""
        out = np.zeros((n, *values.shape[1:]), np.float32)
        if not len(values) or not n or self.fps is None:
            return out
        # on the grid's times, as the frames are held (`add`); the motion keeps the file's own
        pairs = _on_grid(np.array(self._pairs, np.float64), self.fps)
        starts, ends = pairs[:, 0], pairs[:, 1]
        bins = np.floor(starts * self.fps + _EPS).astype(np.int64).clip(min=0)
        keep = bins < n
        np.maximum.at(out, bins[keep], values[keep])
        hit = np.zeros(n, bool)
        hit[bins[keep]] = True
        empty = np.flatnonzero(~hit)
        if len(empty):
            t = empty / self.fps
            # the last pair starting at or before the target (pairs come in time order)
            last = np.searchsorted(starts, t + _EPS, side="right") - 1
            spans = (last >= 0) & (ends[last.clip(min=0)] > t + _EPS)
            out[empty[spans]] = values[last[spans]]
        return out

    def changes(self, n: int) -> np.ndarray | None:
        """(n,) float32 change per target frame (class docstring); None when fps is None."""
        self._measure()
        if self.fps is None:
            return None
        return self._per_target(np.array(self._pair_changes, np.float32), n)

    def motion(self, n: int) -> np.ndarray | None:
        """(n,) float32: the largest change of motion (`models.motion.velocity_changes`, on the
        file's own frames and timestamps) among the frame pairs that start in each target
        frame's interval (`_per_target`); None when fps is None."""
        self._measure()
        if self.fps is None:
            return None
        if not self._pairs:
            return np.zeros(n, np.float32)
        pairs = np.array(self._pairs, np.float64)
        centre = merged_centre(np.stack(self._pair_quadrants))  # the whole picture's, (pairs, 3)
        found = velocity_changes(centre[:, :2], centre[:, 2], pairs[:, 0], pairs[:, 1])
        return self._per_target(np.asarray(found, np.float32), n)

    def halves(self, n: int) -> np.ndarray | None:
        """(n, 2 × len(HALVES)) float32: for each half of the picture (`models.motion.HALVES`,
        top then bottom) its change (the mean of its quadrants') and its change of motion (as
        `motion`, on the centre of the change inside it), per target frame (`_per_target`);
        None when fps is None."""
        self._measure()
        if self.fps is None:
            return None
        if not self._pairs:
            return np.zeros((n, 2 * len(HALVES)), np.float32)
        pairs = np.array(self._pairs, np.float64)
        found = half_values(
            np.stack(self._pair_quadrants),
            np.array(self._pair_regions, np.float32).reshape(-1, 4),
            pairs[:, 0],
            pairs[:, 1],
        )
        return self._per_target(found, n)

    def region_changes(self, n: int) -> np.ndarray | None:
        """(n, 4) float32: `changes` per quadrant of the picture (top left, top right, bottom
        left, bottom right); None when fps is None."""
        self._measure()
        if self.fps is None:
            return None
        regions = np.array(self._pair_regions, np.float32).reshape(-1, 4)
        return self._per_target(regions, n)


class _StillSampler:
    """Sample-and-hold onto t_j = j / fps as `_VideoSampler` does, stretched to `size`,
    converting only the frames it keeps: a second, larger look at a few frames a second
    (`DecodedMedia.stills`) from the same decoding pass."""

    def __init__(self, fps: float, size: tuple[int, int]) -> None:
        self.fps, self._size = fps, size
        self.out: list[np.ndarray] = []
        self._held: av.VideoFrame | None = None
        self._held_image: np.ndarray | None = None
        self._rf = VideoReformatter()

    def _image(self) -> np.ndarray:
        if self._held_image is None:
            assert self._held is not None
            height, width = self._size
            self._held_image = _scaled(self._rf, self._held, width, height)
        return self._held_image

    def add(self, frame: av.VideoFrame, t: float) -> None:
        """`t` is seconds from the timeline origin."""
        if self._held is None:
            self._held = frame
        shown = _on_grid_time(t, self.fps)
        while len(self.out) / self.fps + _EPS < shown:
            self.out.append(self._image())
        self._held, self._held_image = frame, None

    def finish(self, n: int) -> np.ndarray:
        """Stack `n` frames, repeating the last one up to the end of the media."""
        while len(self.out) < n:
            self.out.append(self._image())
        del self.out[n:]
        return np.stack(self.out)


def _quadrant_sums(diff: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(2, 2) sums of an (H, W, C) uint8 difference per quadrant, the quadrants' sizes, and the
    whole sum (a picture one pixel high or wide has overlapping "quadrants")."""
    height, width = diff.shape[:2]
    h, w = height // 2, width // 2
    if height == 2 * h and width == 2 * w and h and w:  # one pass
        sums = diff.reshape(2, h, 2, w, -1).sum(axis=(1, 3, 4), dtype=np.int64)
        return sums.astype(np.float64), np.full((2, 2), float(diff.size // 4)), float(sums.sum())
    sums, sizes = np.zeros((2, 2)), np.zeros((2, 2))
    for a, rows in enumerate((slice(0, max(h, 1)), slice(h, None))):
        for b, cols in enumerate((slice(0, max(w, 1)), slice(w, None))):
            part = diff[rows, cols]
            sums[a, b], sizes[a, b] = float(part.sum(dtype=np.int64)), part.size
    return sums, sizes, float(diff.sum(dtype=np.int64))


def _float_planes(frame: av.AudioFrame) -> list[np.ndarray]:
    """The samples of a float frame, a view of each plane (one for interleaved audio). Not
    `frame.to_ndarray()`: PyAV counts planes by scanning `extended_data` for a NULL, which for
    8-channel planar audio (7.1) runs past the 8 data pointers into other fields, and reading
    that bogus 9th plane segfaults (found by fuzzing). Planes we construct ourselves are only
    the real ones."""
    dtype = np.float32 if frame.format.bytes == 4 else np.float64
    channels = frame.layout.nb_channels
    if not frame.format.is_planar:
        return [np.frombuffer(memoryview(AudioPlane(frame, 0)), dtype, frame.samples * channels)]
    return [
        np.frombuffer(memoryview(AudioPlane(frame, c)), dtype, frame.samples)
        for c in range(channels)
    ]


def _check_samples(frame: av.AudioFrame, path: str) -> None:
    """Float decoders pass NaN/Inf straight through; integer formats cannot hold them. One
    reduction a plane: a NaN makes the largest magnitude NaN, which fails `<=` as an infinity
    fails it (the stack of planes and two passes over them were most of a sound's decode time
    beside FFmpeg's own)."""
    if frame.format.name not in _FLOAT_FORMATS:
        return
    for x in _float_planes(frame):
        peak = float(np.abs(x).max()) if x.size else 0.0
        if peak <= _MAX_ABS_SAMPLE:
            continue
        if not math.isfinite(peak):
            raise MediaError(R.INVALID_SAMPLES, "audio contains NaN or infinite samples", path)
        raise MediaError(
            R.INVALID_SAMPLES,
            f"audio sample magnitude {peak:.3g} is absurd (> {_MAX_ABS_SAMPLE:g})",
            path,
        )


class _AudioCollector:
    """Checks, resamples to mono float32 and keeps the first timestamp for placement.

    Each decoded frame's format is checked as it comes; its samples are checked (NaN, Inf,
    absurd peaks) and resampled in runs of at least `_RESAMPLE_RUN` input samples, gathered in
    an FFmpeg FIFO: the resampler is a filter graph, and a push and pull per frame (94 of them
    for 6 s of AAC) cost more than the conversion, as a reduction per frame cost more than the
    check. swresample's output does not depend on how its input is cut: the samples are those of
    a frame at a time, bit for bit (`tests/models/test_decode_audio_runs.py`)."""

    def __init__(self, rate: int, limits: MediaLimits, path: str) -> None:
        self.rate, self._limits, self._path = rate, limits, path
        self.first_t: float | None = None
        self.seconds_in = 0.0
        self._chunks: list[np.ndarray] = []
        self._resampler: av.AudioResampler | None = None
        self._fifo: AudioFifo | None = None
        self._key: tuple[str, str, int] | None = None

    def add(self, frame: av.AudioFrame, t: float) -> None:
        """`frame` is the collector's after this call (its timestamp is cleared: the FIFO would
        refuse a gap in them, and `t` has placed it already)."""
        _check_audio_format(frame.sample_rate, frame.layout.nb_channels, self._limits, self._path)
        key = (frame.format.name, frame.layout.name, frame.sample_rate)
        if key != self._key:  # parameters may change mid-stream; a resampler takes one setup
            self._flush()
            # rematrix_maxval=1 makes the downmix an average ((L+R)/2) instead of swresample's
            # default 0.707*(L+R), which overshoots 1.0 for correlated channels.
            self._resampler = av.AudioResampler(
                format="flt", layout="mono", rate=self.rate, options={"rematrix_maxval": "1.0"}
            )
            self._fifo = AudioFifo()
            self._key = key
        if self.first_t is None:
            self.first_t = t
        self.seconds_in += frame.samples / frame.sample_rate
        assert self._fifo is not None
        frame.pts = None
        self._fifo.write(frame)
        if self._fifo.samples >= _RESAMPLE_RUN:
            self._resample_waiting()

    @property
    def end(self) -> float:
        """Timestamp just after the last decoded input sample."""
        return (self.first_t or 0.0) + self.seconds_in

    def _resample_waiting(self) -> None:
        assert self._fifo is not None and self._resampler is not None
        run = self._fifo.read()
        if run is not None:
            _check_samples(run, self._path)  # the run's samples are its frames', unchanged
            self._take(self._resampler.resample(run))

    def _take(self, frames: list[av.AudioFrame]) -> None:
        # mono float32 out of the resampler: its one plane, copied so that the frame (and its
        # buffer) goes now, not when a three-hour file's frames are concatenated (`to_ndarray`
        # copied too, through a vstack that cost more than the copy)
        self._chunks.extend(_float_planes(f)[0].copy() for f in frames)

    def _flush(self) -> None:
        if self._resampler is not None:
            self._resample_waiting()
            self._take(self._resampler.resample(None))

    def finish(self, origin: float) -> np.ndarray:
        """Concatenate and place on the timeline: a late start becomes real leading silence."""
        self._flush()
        x = np.concatenate(self._chunks).astype(np.float32, copy=False)
        lead = round(((self.first_t or 0.0) - origin) * self.rate)
        x = np.concatenate([np.zeros(lead, np.float32), x]) if lead > 0 else x[-lead:]
        if not np.isfinite(x).all():
            raise MediaError(R.INVALID_SAMPLES, "resampled audio is not finite", self._path)
        return x


def _header_origin(container: InputContainer) -> float | None:
    """Earliest declared start of the default video and audio streams. Taken from the header,
    not from what is decoded, so separate decode_audio/decode_video calls share one timeline."""
    starts = [
        float(s.start_time * s.time_base)
        for s in (_selected(container, "video"), _selected(container, "audio"))
        if s is not None and s.start_time is not None and s.time_base
    ]
    if starts:
        return min(starts)
    if container.start_time is not None:
        return container.start_time / av.time_base
    return None


def _frame_seconds(stream: av.stream.Stream, frame: av.VideoFrame) -> float:
    if frame.duration and stream.time_base:
        return float(frame.duration * stream.time_base)
    rate = _stream_rate(stream)
    return 1.0 / rate if rate else 0.0


def _packets(
    container: InputContainer, streams: list[av.stream.Stream], path: str
) -> Iterator[av.Packet]:
    """`container.demux`, except for one PyAV failure: when a stream appears mid-file (MPEG-TS
    can announce new programs at any time) PyAV's demux indexes past its stream list and
    raises IndexError. Only the iterator's own step is guarded, so our bugs still surface."""
    demux = container.demux(*streams)
    while True:
        try:
            packet = next(demux)
        except StopIteration:
            return
        except IndexError as exc:
            raise MediaError(
                R.CORRUPT, "a new stream appeared in the middle of the file", path
            ) from exc
        yield packet


def _thread_type() -> str:
    """Frame threading only while PyAV's log callback is off (its default). With a log level
    set, a frame-thread worker that logs a decode error waits for the GIL, while the main thread
    holds the GIL freeing the codec context and waits for that worker: a deadlock we reproduced
    on fuzzed files. Slice threads only run inside send/receive, which release the GIL.
    For the same reason this module never sets a log level itself: FFmpeg stays silent."""
    return "AUTO" if av.logging.get_level() is None else "SLICE"


def _check_decoder_size(stream: av.stream.Stream, limits: MediaLimits, path: str) -> None:
    """A picture past max_pixels is dropped by the decoder (our `max_pixels` codec option)
    without an error reaching us; the size the bitstream told it is still in its context."""
    ctx = stream.codec_context
    width, height = getattr(ctx, "width", 0) or 0, getattr(ctx, "height", 0) or 0
    _check_pixels(width, height, limits, path)


class _Session:
    """One pass over the packets of the selected streams, enforcing limits on what decodes."""

    def __init__(
        self,
        opened: _Opened,
        video: av.stream.Stream | None,
        audio: av.stream.Stream | None,
        sampler: _VideoSampler | None,
        collector: _AudioCollector | None,
        limits: MediaLimits,
    ) -> None:
        self.o, self.video, self.audio = opened, video, audio
        self.sampler, self.collector, self.limits = sampler, collector, limits
        self.origin = _header_origin(opened.container)
        self.firsts: dict[int, float] = {}
        self.ends: dict[int, float] = {}
        # per audio stream, where its last timestamped frame ends on its own timestamps: a
        # recording whose capture dropped sound jumps over the loss, and its samples (`ends`)
        # fall short of the duration it declares without its being cut short
        self.stamped_ends: dict[int, float] = {}
        self.packets: dict[int, int] = {}
        self.frames: dict[int, int] = {}
        self.corrupt: dict[int, int] = {}
        self.stuck = 0  # video frames whose time does not advance past the previous one's
        self._last_video_t: float | None = None
        self._t_min = math.inf
        self._max_frames = limits.max_duration_s * limits.max_fps
        self._video_declared = _own_duration(video)

    def run(self) -> None:
        streams = [s for s in (self.video, self.audio) if s is not None]
        for s in streams:
            s.codec_context.thread_type = _thread_type()
            s.codec_context.thread_count = self.limits.decode_threads  # not FFmpeg's cores + 1
            # A frame bigger than the limit is refused by the decoder before it is allocated.
            s.codec_context.options = {"max_pixels": str(self.limits.max_pixels)}
        o = self.o
        for packet in _packets(o.container, streams, o.path):
            o.deadline.check()
            if packet.size:
                index = packet.stream.index
                self.packets[index] = self.packets.get(index, 0) + 1
            for frame in packet.decode():
                o.deadline.check()
                self._on_frame(packet.stream, frame)
            if packet.stream.type == "video":
                _check_decoder_size(packet.stream, self.limits, o.path)
        o.guard.check(o.path)
        o.deadline.check()
        if o.reader.error is not None:
            raise MediaError(R.CORRUPT, f"read error: {o.reader.error}", o.path)

    def _time(self, stream: av.stream.Stream, frame: av.frame.Frame) -> float:
        base = frame.time_base
        if frame.pts is not None and base:
            # = float(pts * base), without building Fractions (a correctly rounded quotient
            # either way)
            return frame.pts * base.numerator / base.denominator
        return self.ends.get(stream.index, self.origin or 0.0)  # no pts: right after the last

    def _check_span(self, t: float) -> None:
        """Headers lie, so the length is also measured on decoded timestamps (and the origin,
        which a header could place absurdly far away). This also bounds every loop that
        walks the output grid."""
        self._t_min = min(self._t_min, t)
        low = self._t_min if self.origin is None else min(self._t_min, self.origin)
        limit = self.limits.max_duration_s
        if t - low > limit:
            message = f"decoded timestamps span more than max_duration_s={limit:g} s"
            raise MediaError(R.TOO_LONG, message, self.o.path)

    def _check_advance(self, stream: av.stream.Stream, t: float, end: float) -> None:
        """BAD_TIMESTAMPS as soon as video runs far past its own declared duration: a broken
        time base (an mp4 with timescale 0 gets 1 from FFmpeg, and one frame lasts 512 s) would
        otherwise pass as a long file, or be refused as too long."""
        if self._last_video_t is not None and t <= self._last_video_t:
            self.stuck += 1
        self._last_video_t = t
        declared = self._video_declared
        first = self.firsts.get(stream.index, t)
        if declared is not None and end - first > 1.5 * declared + 1.0:
            raise MediaError(
                R.BAD_TIMESTAMPS,
                f"video timestamps run to {end - first:.2f} s but the stream declares "
                f"{declared:.2f} s (time base {stream.time_base})",
                self.o.path,
            )

    def _on_frame(self, stream: av.stream.Stream, frame: Any) -> None:
        t = self._time(stream, frame)
        self._check_span(t)
        self.frames[stream.index] = self.frames.get(stream.index, 0) + 1
        if frame.is_corrupt:
            self.corrupt[stream.index] = self.corrupt.get(stream.index, 0) + 1
        if self.origin is None:
            self.origin = t
        self.firsts.setdefault(stream.index, t)
        if stream.type == "audio":
            assert self.collector is not None
            if frame.pts is not None and frame.sample_rate:
                stamped = t + frame.samples / frame.sample_rate
                self.stamped_ends[stream.index] = max(
                    stamped, self.stamped_ends.get(stream.index, stamped)
                )
            self.collector.add(frame, t)
            end = self.collector.end
        else:
            assert self.sampler is not None
            _check_pixels(frame.width, frame.height, self.limits, self.o.path)
            if self.sampler.count >= self._max_frames:
                raise MediaError(
                    R.TOO_LONG,
                    f"more than {self._max_frames:g} frames (max_duration_s x max_fps)",
                    self.o.path,
                )
            end = t + _frame_seconds(stream, frame)
            self._check_advance(stream, t, end)
            self.sampler.add(frame, t - self.origin)
        self._check_span(end)
        self.ends[stream.index] = max(end, self.ends.get(stream.index, end))


def _own_duration(stream: av.stream.Stream | None) -> float | None:
    """The duration a stream's own header declares; None when only the container has one,
    which Matroska and bitrate-estimated formats make too unreliable to judge timestamps by."""
    if stream is None or not stream.duration or not stream.time_base:
        return None
    return float(stream.duration * stream.time_base)


def _check_damage(session: _Session, stream: av.stream.Stream, path: str) -> None:
    """The share rules of the damage policy (module docstring of `models.media`)."""
    frames = session.frames[stream.index]
    share = session.limits.max_corrupt_share
    corrupt = session.corrupt.get(stream.index, 0)
    if corrupt > share * frames:
        raise MediaError(
            R.CORRUPT,
            f"{corrupt} of {frames} {stream.type} frames are flagged corrupt by the decoder "
            f"(damaged data, concealed), above max_corrupt_share={share:g}",
            path,
        )
    if stream.type == "video" and session.stuck > share * frames:
        raise MediaError(
            R.BAD_TIMESTAMPS,
            f"{session.stuck} of {frames} video frames do not advance in time, "
            f"above max_corrupt_share={share:g}",
            path,
        )


def _check_complete(session: _Session, stream: av.stream.Stream | None, path: str) -> None:
    """NO_FRAMES if a stream has no packets, CORRUPT if its packets decoded to nothing, if too
    many frames are damaged, or if it decoded much less than it declared (truncated file)."""
    if stream is None:
        return
    if stream.index not in session.firsts:
        if not session.packets.get(stream.index):
            raise MediaError(R.NO_FRAMES, f"the {stream.type} stream holds no frames at all", path)
        raise MediaError(R.CORRUPT, f"{stream.type} stream decoded to nothing", path)
    _check_damage(session, stream, path)
    # how far its timestamps run: a truncated file's stop short, a recording's gaps do not
    end = max(session.ends[stream.index], session.stamped_ends.get(stream.index, -math.inf))
    decoded = end - session.firsts[stream.index]
    declared = _declared_s(stream, session.o.container)
    if declared is not None and decoded < 0.8 * declared - 0.5:
        raise MediaError(
            R.CORRUPT,
            f"truncated: {stream.type} declared {declared:.2f} s, decoded {decoded:.2f} s",
            path,
        )


def _decode_opened(
    opened: _Opened,
    *,
    fps: float | None,
    size: tuple[int, int] | None,
    sample_rate: int,
    video: bool,
    audio: bool,
    fit: Fit,
    limits: MediaLimits,
    stills: tuple[float, tuple[int, int]] | None = None,
) -> DecodedMedia:
    vstream = _selected(opened.container, "video") if video else None
    astream = _selected(opened.container, "audio") if audio else None
    sar = _declared_pixel_aspect(vstream)
    still_sampler = _StillSampler(*stills) if stills is not None and vstream else None
    sampler = _VideoSampler(fps, size, fit, sar, still_sampler) if vstream else None
    collector = _AudioCollector(sample_rate, limits, opened.path) if astream else None
    session = _Session(opened, vstream, astream, sampler, collector, limits)
    try:
        session.run()
        for stream in (vstream, astream):
            _check_complete(session, stream, opened.path)
        assert session.origin is not None
        duration = max(session.ends.values()) - session.origin
        frames = changes = regions = motion = halves = out_fps = samples = kept = None
        if sampler is not None:
            n = max(1, math.floor(duration * fps + _EPS)) if fps else sampler.count
            frames = sampler.finish(n)
            changes = sampler.changes(n)
            regions = sampler.region_changes(n)
            motion = sampler.motion(n)
            halves = sampler.halves(n)
            native = _stream_rate(vstream) if vstream is not None else None
            out_fps = fps or native or sampler.count / max(duration, _EPS)
            if still_sampler is not None:
                kept = still_sampler.finish(max(1, math.floor(duration * still_sampler.fps + _EPS)))
        if collector is not None:
            samples = collector.finish(session.origin)
    except (av.FFmpegError, OSError, ValueError) as exc:  # ValueError: PyAV refusing a format
        if vstream is not None:  # the decoder refused (max_pixels) a frame its header hid
            _check_decoder_size(vstream, limits, opened.path)
        raise _failure(exc, "decoding", opened.deadline, opened.reader, opened.path) from exc
    if samples is not None and samples.size == 0:
        raise MediaError(
            R.CORRUPT, "audio lies entirely before the start of the media", opened.path
        )
    return DecodedMedia(
        opened.info,
        frames,
        out_fps,
        samples,
        sample_rate if samples is not None else None,
        duration,
        changes,
        regions,
        motion,
        halves,
        kept,
    )
