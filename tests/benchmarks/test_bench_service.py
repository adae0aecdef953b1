"""bench_service's kept index: reused only when it was built for the same checkpoint and recipe."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import bench_service as bs
from index.version import IndexVersion
from models.attributes import AGREEMENT_FOUND
from models.config import preset
from models.model import TrimodalModel
from models.policy import SearchPolicy


def _build(root: Path, ckpt: Path, n: int, dim: int) -> None:
    bs.make_index(root, ckpt, n, dim)
    (root / bs.KEPT_MARK).write_text(json.dumps(bs._index_key(ckpt, n, dim)))


def test_a_kept_index_is_reused_only_for_its_own_settings(tmp_path: Path):
    ckpt = tmp_path / "ckpt"
    TrimodalModel(preset("tiny")).save(ckpt)
    dim = preset("tiny").embed_dim
    root = tmp_path / "index-40"
    assert not bs.kept_index(root, ckpt, 40, dim)  # nothing there yet
    _build(root, ckpt, 40, dim)
    published = IndexVersion.open(root).path
    assert bs.kept_index(root, ckpt, 40, dim)
    assert IndexVersion.open(root).path == published  # reused as it is

    assert not bs.kept_index(root, ckpt, 41, dim)  # another size: removed, to be built again
    assert not root.exists()

    _build(root, ckpt, 40, dim)
    other = tmp_path / "other"
    TrimodalModel(preset("tiny")).save(other)  # fresh weights: another hash
    assert not bs.kept_index(root, other, 40, dim)
    assert not root.exists()


def test_a_half_built_index_is_not_reused(tmp_path: Path):
    ckpt = tmp_path / "ckpt"
    TrimodalModel(preset("tiny")).save(ckpt)
    root = tmp_path / "index-40"
    (root / "versions").mkdir(parents=True)  # a build killed before its mark was written
    assert not bs.kept_index(root, ckpt, 40, preset("tiny").embed_dim)
    assert not root.exists()


def test_the_synthetic_index_keeps_every_store_a_search_reads(tmp_path: Path):
    """The slowest defaults need every per-item store the agreement re-ranks read: the
    picture's glyph kinds and colours and the sound's timbre among them."""
    ckpt = tmp_path / "ckpt"
    TrimodalModel(preset("tiny")).save(ckpt)
    bs.make_index(tmp_path / "index", ckpt, 20, preset("tiny").embed_dim)
    stores = IndexVersion.open(tmp_path / "index").manifest["sequence_stores"]
    assert {"visual.glyph", "audio.timbre", "visual.direction", "audio.what"} <= set(stores)
    # and its text queries find candidates among every item by what the sentence names
    build = IndexVersion.open(tmp_path / "index").manifest["build"]
    policy = SearchPolicy.from_dict(build["search_policy"])
    assert policy.agreement_found() == AGREEMENT_FOUND
    # nothing in it was decoded: a search does not warn of an older decoder
    from models.media import DECODE_VERSION

    assert build["decode_version"] == DECODE_VERSION
