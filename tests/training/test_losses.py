"""Losses: InfoNCE against a naive version, routing, masks, the SCAV loss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from models.encoders import Embeddings
from training.losses import (
    PairWeights,
    TextBatch,
    info_nce,
    normalise_distances,
    paraphrase_loss,
    scav_loss,
    single_stage_loss,
    soft_targets,
    step_contrast_loss,
    sync_loss,
    two_stage_loss,
)


def unit(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g), dim=-1)


def emb(b=6, t=5, d=8, seed=0):
    seq = unit(b, t, d, seed=seed)
    return Embeddings(F.normalize(seq.mean(1), dim=-1), seq, torch.ones(b, t, dtype=torch.bool))


def naive_info_nce(a, b, scale):
    total = 0.0
    n = a.shape[0]
    for i in range(n):
        row = [scale * float(a[i] @ b[j]) for j in range(n)]
        col = [scale * float(a[j] @ b[i]) for j in range(n)]
        total += -row[i] + math.log(sum(math.exp(x) for x in row))
        total += -col[i] + math.log(sum(math.exp(x) for x in col))
    return total / (2 * n)


def test_info_nce_matches_naive():
    a, b = unit(5, 4, seed=1), unit(5, 4, seed=2)
    assert info_nce(a, b, 3.0).item() == pytest.approx(naive_info_nce(a, b, 3.0), rel=1e-5)


def test_info_nce_is_low_for_aligned_pairs_and_drops_invalid_rows():
    a = unit(8, 16, seed=3)
    assert info_nce(a, a, 20.0) < info_nce(a, unit(8, 16, seed=4), 20.0)
    valid = torch.tensor([True] * 6 + [False] * 2)
    assert info_nce(a, a, 5.0, valid).item() == pytest.approx(info_nce(a[:6], a[:6], 5.0).item())
    assert info_nce(a[:1], a[:1], 5.0).item() == 0.0  # no negatives, no signal


def test_single_stage_routes_caption_kinds():
    v, a = emb(seed=5), emb(seed=6)
    text = TextBatch(unit(6, 8, seed=7), unit(6, 8, seed=8), unit(6, 8, seed=9))
    scales = {k: torch.tensor(10.0) for k in ("visual_text", "audio_text", "audio_visual")}
    total, parts = single_stage_loss(v, a, text, scales)
    w = PairWeights()  # the default: audio–vision at a quarter
    expected = w.vt * parts["vt"] + w.at * parts["at"] + w.av * parts["av"]
    assert total.item() == pytest.approx(expected, rel=1e-5)
    equal, _ = single_stage_loss(v, a, text, scales, PairWeights(1.0, 1.0, 1.0))
    assert equal.item() == pytest.approx(parts["vt"] + parts["at"] + parts["av"], rel=1e-5)
    # Audio captions never touch vision: changing them leaves L_vt alone.
    text2 = TextBatch(text.visual, unit(6, 8, seed=10), text.audiovisual)
    _, parts2 = single_stage_loss(v, a, text2, scales)
    assert parts2["vt"] == pytest.approx(parts["vt"]) and parts2["at"] != pytest.approx(parts["at"])
    weighted, _ = single_stage_loss(v, a, text, scales, PairWeights(vt=0.0, at=1.0, av=0.0))
    assert weighted.item() == pytest.approx(parts["at"], rel=1e-5)


def test_two_stage_stages():
    v, a = emb(seed=1), emb(seed=2)
    text = TextBatch(unit(6, 8, seed=3), unit(6, 8, seed=4), unit(6, 8, seed=5))
    scales = {k: torch.tensor(10.0) for k in ("visual_text", "audio_text")}
    _, p1 = two_stage_loss(1, v, None, text, scales)
    _, p2 = two_stage_loss(2, None, a, text, scales)
    assert set(p1) == {"vt"} and set(p2) == {"at"}
    with pytest.raises(ValueError):
        two_stage_loss(3, v, a, text, scales)


def test_normalised_distances_are_standardised():
    d = torch.rand(6, 6) * 100
    n = normalise_distances(d)
    assert n.shape == d.shape and n.abs().max() < 5


def test_scav_loss_prefers_matching_sequences_and_has_gradients():
    a = emb(seed=11)
    same = Embeddings(a.pooled, a.sequence.clone().requires_grad_(True), a.mask)
    other = Embeddings(a.pooled, unit(6, 5, 8, seed=12).requires_grad_(True), a.mask)
    matched = scav_loss(a, same, 5.0)
    unmatched = scav_loss(a, other, 5.0)
    assert matched < unmatched
    matched.backward()
    assert same.sequence.grad is not None and torch.isfinite(same.sequence.grad).all()


def test_soft_targets_share_mass_between_identical_captions_only():
    t = unit(4, 8, seed=3)
    t[2] = t[0]  # captions 0 and 2 say the same thing
    p = soft_targets(t * 5.0, temperature=0.01)  # scale is irrelevant: cosine
    torch.testing.assert_close(p.sum(1), torch.ones(4))
    assert p[0, 0].item() == pytest.approx(0.5, abs=1e-3)
    assert p[0, 2].item() == pytest.approx(0.5, abs=1e-3)
    assert p[1, 1].item() > 0.99 and p[3, 3].item() > 0.99


def naive_soft_info_nce(a, b, scale, p):
    n = a.shape[0]
    total = 0.0
    for i in range(n):
        row = [scale * float(a[i] @ b[j]) for j in range(n)]
        col = [scale * float(a[j] @ b[i]) for j in range(n)]
        lr, lc = math.log(sum(math.exp(x) for x in row)), math.log(sum(math.exp(x) for x in col))
        total += sum(float(p[i, j]) * (lr - row[j]) for j in range(n))
        total += sum(float(p[i, j]) * (lc - col[j]) for j in range(n))
    return total / (2 * n)


def test_info_nce_with_soft_targets_matches_naive_and_identity_is_plain():
    a, b = unit(5, 4, seed=1), unit(5, 4, seed=2)
    p = soft_targets(unit(5, 6, seed=4), temperature=0.5)
    got = info_nce(a, b, 3.0, targets=p).item()
    assert got == pytest.approx(naive_soft_info_nce(a, b, 3.0, p), rel=1e-5)
    plain = info_nce(a, b, 3.0).item()
    assert info_nce(a, b, 3.0, targets=torch.eye(5)).item() == pytest.approx(plain, rel=1e-6)
    valid = torch.tensor([True, False, True, True, True])
    keep = valid.nonzero().flatten()
    sub = p[keep][:, keep]
    expected = naive_soft_info_nce(a[keep], b[keep], 3.0, sub / sub.sum(1, keepdim=True))
    assert info_nce(a, b, 3.0, valid, p).item() == pytest.approx(expected, rel=1e-5)


def test_paraphrase_loss_pulls_two_wordings_of_a_caption_together():
    raw_a, raw_b = unit(8, 16, seed=1), unit(8, 16, seed=2)
    near = F.normalize(raw_a + 0.1 * raw_b, dim=-1)  # the other wording, close to the anchor
    low = paraphrase_loss(raw_a, near, raw_a, raw_b, temperature=0.1)
    high = paraphrase_loss(raw_a, near.roll(1, 0), raw_a, raw_b.roll(1, 0), temperature=0.1)
    assert 0 <= low < 0.1 < high
    # Against a naive per-row version: identity targets, both directions.
    logits = raw_a @ near.T / 0.1
    naive = 0.5 * (
        F.cross_entropy(logits, torch.arange(8)) + F.cross_entropy(logits.T, torch.arange(8))
    )
    torch.testing.assert_close(low, naive)


def test_paraphrase_loss_counts_identical_sentences_as_positives():
    raw = unit(4, 16, seed=3)
    other_raw = raw.clone()
    other_raw[1] = raw[2]  # clip 1's other wording is word for word clip 2's caption
    proj = raw.clone()
    other = raw.clone()
    other[1] = raw[2]
    with_dup = paraphrase_loss(proj, other, raw, other_raw, temperature=0.1)
    logits = proj @ other.T / 0.1
    plain = 0.5 * (
        F.cross_entropy(logits, torch.arange(4)) + F.cross_entropy(logits.T, torch.arange(4))
    )
    assert with_dup < plain  # the duplicate is not pushed away as a negative
    assert paraphrase_loss(proj[:1], other[:1], raw[:1], other_raw[:1], 0.1) == 0


def test_step_contrast_loss_knows_when_not_only_what():
    """The same steps in another order (every clip's own content, at the wrong times) must cost
    more than the right order; padded steps and invalid rows take no part."""
    a = emb(b=4, t=6, d=16, seed=21)
    aligned = step_contrast_loss(a, a, 0.1)
    shifted = Embeddings(a.pooled, torch.roll(a.sequence, 2, dims=1), a.mask)
    assert aligned < step_contrast_loss(a, shifted, 0.1) - 1.0

    garbage = a.sequence.clone()
    garbage[:, 4:] = float("nan")  # padding may hold anything
    mask = a.mask.clone()
    mask[:, 4:] = False
    padded = Embeddings(a.pooled, garbage, mask)
    cut = Embeddings(a.pooled, a.sequence[:, :4], a.mask[:, :4])
    assert torch.allclose(
        step_contrast_loss(padded, padded, 0.1), step_contrast_loss(cut, cut, 0.1)
    )

    valid = torch.tensor([True, True, False, True])
    noisy = Embeddings(a.pooled, a.sequence.clone(), a.mask)
    noisy.sequence[2] = unit(6, 16, seed=5)  # a row without its pair: ignored when invalid
    assert torch.allclose(
        step_contrast_loss(a, noisy, 0.1, valid), step_contrast_loss(a, a, 0.1, valid)
    )
    one = Embeddings(a.pooled[:1], a.sequence[:1, :1], a.mask[:1, :1])
    assert step_contrast_loss(one, one, 0.1) == 0  # a single step: nothing to contrast


def test_step_contrast_loss_has_gradients_on_both_sides():
    a = emb(b=3, t=4, d=8, seed=31)
    v = Embeddings(a.pooled, unit(3, 4, 8, seed=32).requires_grad_(True), a.mask)
    s = Embeddings(a.pooled, a.sequence.clone().requires_grad_(True), a.mask)
    step_contrast_loss(s, v, 0.07).backward()
    assert torch.isfinite(v.sequence.grad).all() and v.sequence.grad.abs().sum() > 0
    assert torch.isfinite(s.sequence.grad).all() and s.sequence.grad.abs().sum() > 0


def test_sync_loss_needs_the_right_time_not_only_the_right_clip():
    """Each clip's own picture shifted in time is a negative: the same content two steps late
    costs more than the right timing, and far more than chance when aligned."""
    a = emb(b=6, t=12, d=16, seed=41)
    aligned = sync_loss(a, a, 0.05)
    late = Embeddings(a.pooled, torch.roll(a.sequence, 2, dims=1), a.mask)
    assert aligned < 0.1 * sync_loss(a, late, 0.05)
    assert aligned < 0.1 * math.log(6 + 8)
    valid = torch.tensor([True, True, True, False, True, True])
    other = Embeddings(a.pooled, a.sequence.clone(), a.mask)
    other.sequence[3] = unit(12, 16, seed=6)
    assert torch.allclose(
        sync_loss(a, other, 0.05, valid=valid), sync_loss(a, a, 0.05, valid=valid)
    )
    short = Embeddings(a.pooled[:, :], a.sequence[:, :3], a.mask[:, :3])
    assert torch.isfinite(sync_loss(short, short, 0.05))  # lags longer than the clip are skipped
