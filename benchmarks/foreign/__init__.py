"""A foreign SynthAV corpus and a robustness set (SYNTHAV.md, "Benchmark protocol").

The foreign corpus is the SynthAV world drawn with Pillow, sounded with the sox CLI, encoded by the
ffmpeg CLI and described with a caption grammar of its own. It was written from the world's
description alone, never from the project's generator (training/synthav/), so a model that learned
that generator's pixels, waveforms or sentences rather than the world scores lower on it. It is
only ever reported: never used for training or to choose a model or a setting.

- `python -m benchmarks.foreign.render --out DIR --clips N --seed S`: the foreign corpus.
- `python -m benchmarks.foreign.reencode --manifest M --out DIR`: the own test clips re-encoded
  to other containers, codecs, frame rates, sizes, sample rates and channel counts.
"""
