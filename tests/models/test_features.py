"""Log-mel and frame features: shapes, the mel scale, parity with torchaudio where it loads."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.features import (
    IMAGE_MEAN,
    LogMel,
    LogMelConfig,
    frames_batch,
    frames_to_tensor,
    log_mel,
    mel_filterbank,
    num_mel_frames,
    pad_batch,
)


def naive_filterbank(cfg: LogMelConfig) -> np.ndarray:
    """HTK triangles written the slow, obvious way: one filter, one frequency at a time."""
    mel = lambda hz: 2595 * math.log10(1 + hz / 700)  # noqa: E731
    hz = lambda m: 700 * (10 ** (m / 2595) - 1)  # noqa: E731
    f_max = cfg.f_max or cfg.sample_rate / 2
    edges = [
        hz(mel(cfg.f_min) + i * (mel(f_max) - mel(cfg.f_min)) / (cfg.n_mels + 1))
        for i in range(cfg.n_mels + 2)
    ]
    n_freqs = cfg.n_fft // 2 + 1
    out = np.zeros((n_freqs, cfg.n_mels))
    for j in range(cfg.n_mels):
        lo, mid, hi = edges[j], edges[j + 1], edges[j + 2]
        for i in range(n_freqs):
            f = i * (cfg.sample_rate // 2) / (n_freqs - 1)
            if lo < f <= mid:
                out[i, j] = (f - lo) / (mid - lo)
            elif mid < f < hi:
                out[i, j] = (hi - f) / (hi - mid)
    return out


@pytest.mark.parametrize(
    "cfg", [LogMelConfig(), LogMelConfig(n_mels=128, n_fft=1024, f_min=20.0, f_max=7600.0)]
)
def test_filterbank_matches_naive_triangles(cfg):
    np.testing.assert_allclose(mel_filterbank(cfg).numpy(), naive_filterbank(cfg), atol=1e-5)


def test_log_mel_shape_and_frame_rate():
    cfg = LogMelConfig()
    wave = torch.randn(3, 16_000 * 2)
    out = LogMel(cfg)(wave)
    assert out.shape == (3, 64, num_mel_frames(32_000)) == (3, 64, 201)
    assert cfg.frames_per_second == 100


def test_a_tone_lands_in_the_right_mel_band():
    cfg = LogMelConfig()
    t = torch.arange(16_000) / 16_000
    fb = mel_filterbank(cfg)
    for freq in (300.0, 1000.0, 4000.0):
        spec = LogMel(cfg)(torch.sin(2 * math.pi * freq * t)).mean(dim=-1)
        bin_hz = torch.linspace(0, 8000, fb.shape[0])
        centres = (fb * bin_hz[:, None]).sum(0) / fb.sum(0)
        assert abs(centres[spec.argmax()].item() - freq) / freq < 0.15


def test_batched_equals_one_by_one():
    waves = torch.randn(4, 8000)
    batched = LogMel()(waves)
    single = torch.stack([LogMel()(w) for w in waves])
    torch.testing.assert_close(batched, single, atol=1e-4, rtol=1e-4)


def test_very_short_and_non_finite_audio():
    assert LogMel()(torch.randn(100)).shape == (64, 1)
    bad = np.zeros(1600, dtype=np.float32)
    bad[10] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        log_mel(bad)
    with pytest.raises(TypeError):
        LogMel()(torch.zeros(100, dtype=torch.int16))


def torchaudio_mel(torchaudio) -> torch.nn.Module:
    """torchaudio's mel spectrogram with `LogMelConfig()`'s settings (the reference we match)."""
    return torchaudio.transforms.MelSpectrogram(
        sample_rate=16_000,
        n_fft=400,
        hop_length=160,
        n_mels=64,
        power=2.0,
        center=True,
        pad_mode="reflect",
        norm=None,
        mel_scale="htk",
    )


def test_matches_torchaudio_where_it_loads():
    torchaudio = pytest.importorskip("torchaudio", exc_type=ImportError)
    wave = torch.randn(2, 16_000)
    ref = torchaudio_mel(torchaudio)(wave)
    torch.testing.assert_close(LogMel(LogMelConfig()).power_mel(wave), ref, rtol=1e-4, atol=1e-4)


def test_frames_to_tensor_normalises_and_resizes():
    frames = np.full((2, 5, 40, 60, 3), 255, dtype=np.uint8)
    out = frames_to_tensor(frames, size=(32, 32))
    assert out.shape == (2, 5, 3, 32, 32)
    expected = (1.0 - IMAGE_MEAN[0]) / 0.229
    assert torch.allclose(out[:, :, 0], torch.full_like(out[:, :, 0], expected), atol=1e-4)
    with pytest.raises(TypeError):
        frames_to_tensor(frames.astype(np.float32))
    with pytest.raises(ValueError):
        frames_to_tensor(np.zeros((4, 4, 3), dtype=np.uint8))


def test_pad_batch_masks_padding():
    a, b = torch.ones(3, 2), torch.ones(5, 2)
    batch, mask = pad_batch([a, b])
    assert batch.shape == (2, 5, 2)
    assert mask.tolist() == [[True, True, True, False, False], [True] * 5]
    assert batch[0, 3:].abs().sum() == 0


def _per_clip_batch(clips, size):
    """The way a batch of pictures was made before: a tensor per clip, padded, stacked."""
    tensors = [
        frames_to_tensor(c, size=size) if len(c) else torch.zeros(0, 3, *size) for c in clips
    ]
    lengths = [t.shape[0] for t in tensors]
    batch, _ = pad_batch([t if len(t) else torch.zeros(1, 3, *size) for t in tensors])
    return batch, torch.arange(batch.shape[1])[None] < torch.tensor(lengths)[:, None]


@pytest.mark.parametrize(
    "shapes",
    [
        [(72, 16, 16), (60, 16, 16), (1, 16, 16)],  # ragged, all at the model's size
        [(12, 16, 16), None, (5, 16, 16)],  # an audio-only item among them
        [(12, 16, 16), (7, 24, 40)],  # one to resize
        [(3, 9, 30)],  # only one, to resize
        [(1, 16, 16)],  # a single frame
        [(5, 16, 16), (1, 9, 30)],  # a single frame to resize
        [(2, 16, 16), (4, 16, 16)],
        [None],
    ],
)
def test_a_batch_of_pictures_is_bit_for_bit_the_per_clip_one(shapes):
    """`frames_batch` makes a training batch's pictures in one buffer: the values, the mask and
    the memory layout (which the convolutions' arithmetic follows) must be the per-clip path's,
    or a checkpoint would no longer reproduce."""
    rng = np.random.default_rng(3)
    clips = [
        np.zeros((0,), np.uint8) if s is None else rng.integers(0, 256, (*s, 3), dtype=np.uint8)
        for s in shapes
    ]
    want, want_mask = _per_clip_batch(clips, (16, 16))
    got, mask = frames_batch(clips, (16, 16))
    assert torch.equal(got, want) and torch.equal(mask, want_mask)
    assert got.stride() == want.stride() and got.dtype == torch.float32
    # the same clips as torch tensors, and as read-only arrays (a feature cache's memmap slices)
    as_tensors, _ = frames_batch([torch.as_tensor(c) for c in clips], (16, 16))
    read_only = [c.copy() for c in clips]
    for c in read_only:
        c.flags.writeable = False
    assert torch.equal(as_tensors, want) and torch.equal(frames_batch(read_only, (16, 16))[0], want)
    with pytest.raises(TypeError, match="uint8"):
        frames_batch(
            [clips[0].astype(np.float32) if len(clips[0]) else np.ones((2, 16, 16, 3))], (16, 16)
        )


@pytest.mark.parametrize(
    "shapes",
    [
        [(72, 16, 16), (60, 16, 16), (7, 16, 16)],  # ragged, all at the model's size
        [(12, 16, 16), None, (5, 16, 16)],  # an audio-only item among them
        [(12, 16, 16), (7, 24, 40)],  # one to resize
        [(5, 16, 16), (1, 16, 16)],  # one frame: the whole batch is contiguous
        [(2, 16, 16), (4, 16, 16)],  # fewer frames than `every`
        [None],
    ],
)
@pytest.mark.parametrize("every", [1, 2, 3])
def test_every_kth_frame_is_the_whole_batch_strided(shapes, every):
    """What the visual trunk reads, made without the frames it skips, must be the whole batch's
    `[:, ::every]` in values and in each picture's layout (a convolution over it gives the same
    numbers), with the whole batch's mask."""
    rng = np.random.default_rng(5)
    clips = [
        np.zeros((0,), np.uint8) if s is None else rng.integers(0, 256, (*s, 3), dtype=np.uint8)
        for s in shapes
    ]
    whole, whole_mask = frames_batch(clips, (16, 16))
    got, mask = frames_batch(clips, (16, 16), every)
    want = whole[:, ::every]
    assert torch.equal(got, want) and torch.equal(mask, whole_mask)
    # the stem reads them as one run of pictures: laid out as the whole batch's would be
    assert got.flatten(0, 1).stride()[1:] == want.flatten(0, 1).stride()[1:]
    conv = torch.nn.Conv2d(3, 4, kernel_size=4, stride=4)
    with torch.no_grad():
        assert torch.equal(conv(got.flatten(0, 1)), conv(want.flatten(0, 1)))
    as_tensors, _ = frames_batch([torch.as_tensor(c) for c in clips], (16, 16), every)
    assert torch.equal(as_tensors, want)
    with pytest.raises(ValueError, match="every"):
        frames_batch(clips, (16, 16), 0)
