"""What the visual encoder measures of a clip's frames without learning, kept per clip.

`VisualEncoder.measure` makes two things from every frame of a batch: the change of each region
since the frame before (`change_features`) and the colour grid its sequence branch reads
(`colour_grid`). Neither learns, and a training clip's frames are the same every epoch unless
the pictures are augmented; yet both were made again at every step, from a float copy of all
the frames of every clip (72 a clip at 12 fps), of which the trunk itself reads only every
third. For 64 clips of the small preset that was ~0.3 s of a ~1.4 s step on two cores.
`PictureMemo` keeps them per clip (~60 KB a clip of 72 frames), so after a clip's first batch
only the frames the trunk reads are converted.

While the stem's weights are fixed (the branch phase: the trunk is frozen), its convolutions'
features of each clip's picked frames are kept too (`PictureMemo.frozen_stem`: ~200 KB a clip of
the small preset, ~400 MB for 2,000 training clips, for the phase only), and a batch of kept
clips converts no frames at all: only the stem's projection runs, over the whole batch as before
(a matrix product's rounding may depend on its number of rows).

The values are those the batch would have made, bit for bit: a clip's measures and its stem's
features do not depend on the other clips of its batch, given the layout the batch gives its
pictures (`models.features.channels_last`), by which they are kept apart (tested). So a run
gives the same numbers as before.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace

import numpy as np
import torch
from torch import Tensor

from models.config import Modality
from models.encoders import FrameStem, PictureInputs, VisualEncoder
from models.features import channels_last, frames_batch
from models.model import TrimodalModel

_PARTS = ("changes", "grid")
# the stem's features of the picked frames, by the layout that made them (`channels_last`)
_STEMS = {False: "stem, contiguous", True: "stem, channels last"}


class PictureMemo:
    """Per clip (by a key naming its frames, and the picture size), the measures of
    `VisualEncoder.measure` that the encoder reads. One per source of frames that never change
    under a key: `training.cache.FeatureCache.pictures`."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, int], dict[str, Tensor]] = {}
        self._frozen: TrimodalModel | None = None  # whose stem's features are kept too
        # its stem's features of a padded (all-zero) frame, by layout (`channels_last`)
        self._blank: dict[bool, Tensor] = {}

    def __len__(self) -> int:
        return len(self._known)

    @contextmanager
    def frozen_stem(self, model: TrimodalModel) -> Iterator[None]:
        """Inside, `model`'s visual stem does not learn (the branch phase): its features of each
        keyed clip's picked frames are kept too, and forgotten on leaving."""
        encoder = model.encoders[Modality.VISUAL]
        assert isinstance(encoder, VisualEncoder)
        if any(p.requires_grad for p in encoder.stem.parameters()):
            raise ValueError("the visual stem learns: its features cannot be kept")
        if self._frozen is not None:
            raise RuntimeError("a stem is kept already")
        # a pretrained stem (`HFFrameStem`) has no features apart from its output: not kept
        self._frozen = model if isinstance(encoder.stem, FrameStem) else None
        try:
            yield
        finally:
            self._frozen, self._blank = None, {}
            for found in self._known.values():
                for part in _STEMS.values():
                    found.pop(part, None)

    def inputs(
        self,
        model: TrimodalModel,
        clips: Sequence[np.ndarray | Tensor],
        keys: Sequence[str | None],
    ) -> PictureInputs:
        """What `model`'s visual encoder reads of `clips` (uint8 (T, H, W, 3) each), equal to
        `measure(*model.visual_inputs(clips))` (inside `frozen_stem`, with the stem's features
        given instead of the picked frames); `keys[i]` names clip i's frames (None: frames of
        their own, e.g. augmented, measured and not kept)."""
        if len(keys) != len(clips):
            raise ValueError(f"{len(keys)} keys for {len(clips)} clips")
        encoder = model.encoders[Modality.VISUAL]
        assert isinstance(encoder, VisualEncoder)
        size = model.cfg.visual.image_size
        need = [
            part
            for part, read in zip(
                _PARTS,
                (encoder.changes is not None, encoder.branch is not None and encoder.run_branch),
                strict=True,
            )
            if read
        ]
        every = encoder.cfg.trunk_every
        # the stem's arithmetic follows the layout its batch gives the pictures: kept apart
        layout = channels_last([len(c) for c in clips], every)
        stems = self._frozen is model
        if stems:
            need.append(_STEMS[layout])
        found = [self._known.get((k, size)) if k is not None else None for k in keys]
        missing = [i for i, f in enumerate(found) if f is None or any(p not in f for p in need)]
        if len(missing) == len(clips):  # nothing kept yet: the batch measured whole, as before
            measured = encoder.measure(*model.visual_inputs(clips))
            if stems:
                measured = replace(measured, stem=self._stem(encoder, measured, layout))
            self._keep(measured, keys, clips, range(len(clips)), size, every, layout)
            return measured
        if missing:
            some = encoder.measure(*model.visual_inputs([clips[i] for i in missing]))
            if stems:
                some = replace(some, stem=self._stem(encoder, some, layout))
            chosen = [keys[i] for i in missing]
            self._keep(some, chosen, clips, missing, size, every, layout, found)
        device = model.device
        mask = (
            torch.arange(max([1, *map(len, clips)]))[None]
            < torch.tensor([len(c) for c in clips])[:, None]
        )
        parts: dict[str, Tensor | None] = dict.fromkeys((*_PARTS, "stem"))
        for part in need:
            rows = [f[part] if f is not None else None for f in found]
            if part in _STEMS.values():
                blank = self._blank[layout]
                parts["stem"] = _stacked(rows, -(-mask.shape[1] // every), device, blank)
            else:
                parts[part] = _stacked(rows, mask.shape[1], device)
        picked = None
        if not stems:
            picked = frames_batch(clips, (size, size), every)[0].to(device)
        return PictureInputs(
            picked, mask.to(device), parts["changes"], parts["grid"], parts["stem"]
        )

    def _stem(self, encoder: VisualEncoder, measured: PictureInputs, layout: bool) -> Tensor:
        """The stem's features of the picked frames (`FrameStem.features`), as
        `VisualEncoder.encode` makes them; and once per layout, those of a padded frame (zeros,
        laid out as such a batch's are)."""
        picked, stem = measured.picked, encoder.stem
        assert picked is not None and isinstance(stem, FrameStem)
        b, f = picked.shape[:2]
        if layout not in self._blank:
            zeros = torch.zeros(1, *picked.shape[2:], device=picked.device)
            if layout:
                zeros = zeros.contiguous(memory_format=torch.channels_last)
            self._blank[layout] = stem.features(zeros)[0].detach()
        # laid out as the batch they are for gives the pictures, whatever batch measured them
        fmt = torch.channels_last if layout else torch.contiguous_format
        pictures = picked.flatten(0, 1).contiguous(memory_format=fmt)
        return stem.features(pictures).reshape(b, f, -1).detach()

    def _keep(
        self,
        measured: PictureInputs,
        keys: Sequence[str | None],
        clips: Sequence[np.ndarray | Tensor],
        rows: Sequence[int],
        size: int,
        every: int,
        layout: bool,
        found: list[dict[str, Tensor] | None] | None = None,
    ) -> None:
        """Keep each keyed clip's measures (its real frames' rows); `found` gets them too."""
        stem = _STEMS[layout]
        values = {"changes": measured.changes, "grid": measured.grid, stem: measured.stem}
        for j, (key, i) in enumerate(zip(keys, rows, strict=True)):
            n = len(clips[i])
            real = {"changes": n, "grid": n, stem: -(-n // every)}
            # Own memory (the batch's tensors go), and ordinary tensors even when measured for
            # an evaluation under inference mode: training may read them with autograd on.
            with torch.inference_mode(False):
                kept = {
                    part: value[j, : real[part]].clone()
                    for part, value in values.items()
                    if value is not None
                }
            if key is not None:
                self._known.setdefault((key, size), {}).update(kept)
                kept = self._known[(key, size)]
            if found is not None:
                found[i] = kept


def _stacked(
    rows: Sequence[Tensor | None], frames: int, device: torch.device, blank: Tensor | None = None
) -> Tensor:
    """Per-clip rows (n_i, C) → (B, frames, C), past each clip's end zero (as a batch's padded
    frames measure: masked changes, a colour grid of zeros) or `blank` (the stem's features of a
    padded frame)."""
    width = next(r.shape[1] for r in rows if r is not None)
    out = torch.zeros(len(rows), frames, width, device=device)
    if blank is not None:
        out[:] = blank.to(device)
    for i, r in enumerate(rows):
        if r is not None and len(r):
            out[i, : len(r)] = r
    return out
