"""What the visual encoder measures of a clip's frames without learning, kept per clip.

`VisualEncoder.measure` makes two things from every frame of a batch: the change of each region
since the frame before (`change_features`) and the colour grid its sequence branch reads
(`colour_grid`). Neither learns, and a training clip's frames are the same every epoch unless
the pictures are augmented; yet both were made again at every step, from a float copy of all the
frames of every clip (72 a clip at 12 fps), of which the trunk itself reads only every third. For
64 clips that was ~0.6 s of a ~1.5 s step on two cores. `PictureMemo` keeps them per clip (~60 KB
a clip of 72 frames), so after a clip's first batch only the frames the trunk reads are
converted. The values are those the batch would have made, bit for bit (a clip's measures do not
depend on the other clips of its batch; tested), so a run gives the same numbers as before.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from models.config import Modality
from models.encoders import PictureInputs, VisualEncoder
from models.features import frames_batch
from models.model import TrimodalModel

_PARTS = ("changes", "grid")


class PictureMemo:
    """Per clip (by a key naming its frames, and the picture size), the measures of
    `VisualEncoder.measure` that the encoder reads. One per source of frames that never change
    under a key: `training.cache.FeatureCache.pictures`."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, int], dict[str, Tensor]] = {}

    def __len__(self) -> int:
        return len(self._known)

    def inputs(
        self,
        model: TrimodalModel,
        clips: Sequence[np.ndarray | Tensor],
        keys: Sequence[str | None],
    ) -> PictureInputs:
        """What `model`'s visual encoder reads of `clips` (uint8 (T, H, W, 3) each), equal to
        `measure(*model.visual_inputs(clips))`; `keys[i]` names clip i's frames (None: frames
        of their own, e.g. augmented, measured and not kept)."""
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
        found = [self._known.get((k, size)) if k is not None else None for k in keys]
        missing = [i for i, f in enumerate(found) if f is None or any(p not in f for p in need)]
        if len(missing) == len(clips):  # nothing kept yet: the batch measured whole, as before
            measured = encoder.measure(*model.visual_inputs(clips))
            self._keep(measured, keys, clips, range(len(clips)), size)
            return measured
        if missing:
            some = encoder.measure(*model.visual_inputs([clips[i] for i in missing]))
            self._keep(some, [keys[i] for i in missing], clips, missing, size, found)
        every = encoder.cfg.trunk_every
        picked, mask = frames_batch(clips, (size, size), every)
        device = model.device
        parts: dict[str, Tensor | None] = dict.fromkeys(_PARTS)
        for part in need:
            rows = [f[part] if f is not None else None for f in found]
            parts[part] = _stacked(rows, mask.shape[1], device)
        return PictureInputs(picked.to(device), mask.to(device), parts["changes"], parts["grid"])

    def _keep(
        self,
        measured: PictureInputs,
        keys: Sequence[str | None],
        clips: Sequence[np.ndarray | Tensor],
        rows: Sequence[int],
        size: int,
        found: list[dict[str, Tensor] | None] | None = None,
    ) -> None:
        """Keep each keyed clip's measures (its real frames' rows); `found` gets them too."""
        for j, (key, i) in enumerate(zip(keys, rows, strict=True)):
            n = len(clips[i])
            # Own memory (the batch's tensors go), and ordinary tensors even when measured for
            # an evaluation under inference mode: training may read them with autograd on.
            with torch.inference_mode(False):
                kept = {
                    part: value[j, :n].clone()
                    for part, value in zip(_PARTS, (measured.changes, measured.grid), strict=True)
                    if value is not None
                }
            if key is not None:
                self._known.setdefault((key, size), {}).update(kept)
                kept = self._known[(key, size)]
            if found is not None:
                found[i] = kept


def _stacked(rows: Sequence[Tensor | None], frames: int, device: torch.device) -> Tensor:
    """Per-clip rows (n_i, C) → (B, frames, C), zero past each clip's end (as a batch's padded
    frames measure: masked changes, a colour grid of zeros)."""
    width = next(r.shape[1] for r in rows if r is not None)
    out = torch.zeros(len(rows), frames, width, device=device)
    for i, r in enumerate(rows):
        if r is not None and len(r):
            out[i, : len(r)] = r
    return out
