"""Thumbnails: one frame of an indexed video as JPEG, decoded through the safe decoder."""

from __future__ import annotations

import threading
from collections import OrderedDict
from fractions import Fraction

import av
import numpy as np

from models.media import MediaLimits, decode_video

THUMB_SIZE = (180, 320)  # (height, width): a 16:9 box, the frame fitted inside, letterboxed


def jpeg(rgb: np.ndarray, quality: int = 5) -> bytes:
    """RGB uint8 (H, W, 3) → JPEG bytes (FFmpeg's mjpeg; `quality` is its qscale, 2 = best)."""
    h, w = rgb.shape[:2]
    ctx = av.CodecContext.create("mjpeg", "w")
    ctx.width, ctx.height = w - w % 2, h - h % 2
    ctx.pix_fmt = "yuvj420p"
    ctx.time_base = Fraction(1, 25)
    ctx.options = {"qscale": str(quality)}
    ctx.flags |= av.codec.context.Flags.qscale
    frame = av.VideoFrame.from_ndarray(
        np.ascontiguousarray(rgb[: ctx.height, : ctx.width]), "rgb24"
    )
    packets = ctx.encode(frame.reformat(format="yuvj420p")) + ctx.encode(None)
    return b"".join(bytes(p) for p in packets)


class Thumbnails:
    """Thumbnails by (version, item id), decoded once and kept in a small LRU."""

    def __init__(self, capacity: int = 512, limits: MediaLimits | None = None) -> None:
        self.capacity = capacity
        self.limits = limits or MediaLimits(max_wall_s=10.0)
        self._cache: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def cached(self, version: str, item_id: str) -> bytes | None:
        """The thumbnail if it was made already (no decoding: cheap enough for the event loop)."""
        key = (version, item_id)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        return None

    def get(self, version: str, item_id: str, media: str, duration_s: float | None) -> bytes:
        if (data := self.cached(version, item_id)) is not None:
            return data
        key = (version, item_id)
        # One frame a second is plenty to pick from; the middle of the clip shows what it is.
        frames = decode_video(media, fps=1.0, size=THUMB_SIZE, fit="pad", limits=self.limits)
        if len(frames) == 0:
            raise ValueError("no frames")
        data = jpeg(frames[len(frames) // 2])
        with self._lock:
            self._cache[key] = data
            while len(self._cache) > self.capacity:
                self._cache.popitem(last=False)
        return data
