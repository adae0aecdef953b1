"""SynthAV: the embedded audio-visual corpus and benchmark (see shared/SYNTHAV.md).

Procedurally generated short videos with real cross-modal structure, written as real media files
with a JSONL manifest and three kinds of captions. `generate_corpus` is the entry point; the
`trimodal synth` command wraps it.
"""

from training.synthav.plan import CorpusPlan, PlannedClip, plan_corpus
from training.synthav.render import render_frames
from training.synthav.sound import render_audio
from training.synthav.world import (
    AMBIENCES,
    COLOURS,
    DIRECTIONS,
    SCENES,
    SIZES,
    TEMPOS,
    ClipSpec,
    GeneratorConfig,
    RenderConfig,
    Role,
    Source,
    SourceSpec,
)
from training.synthav.writer import (
    CorpusSummary,
    encode_clip,
    generate_corpus,
    manifest_record,
    read_manifest,
)

__all__ = [
    "AMBIENCES",
    "COLOURS",
    "DIRECTIONS",
    "SCENES",
    "SIZES",
    "TEMPOS",
    "ClipSpec",
    "CorpusPlan",
    "CorpusSummary",
    "GeneratorConfig",
    "PlannedClip",
    "RenderConfig",
    "Role",
    "Source",
    "SourceSpec",
    "encode_clip",
    "generate_corpus",
    "manifest_record",
    "plan_corpus",
    "read_manifest",
    "render_audio",
    "render_frames",
]
