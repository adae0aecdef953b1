"""The index build on a local Ray cluster (head + 2 worker nodes on loopback).

The Ray build must give the single-machine build's index (same ids, vectors within tolerance, same
search results), survive a worker process killed mid-build with nothing missing, and report a
corrupt file instead of failing.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

# Every node on 127.0.0.1: Ray otherwise binds and connects by the machine's network address.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
ray = pytest.importorskip("ray")

from index.build import build_index  # noqa: E402
from index.embed import default_work_dir, plan_shards  # noqa: E402
from index.ray_runner import RayRunner, parse_address  # noqa: E402
from index.search import Searcher  # noqa: E402
from index.version import IndexVersion, verify  # noqa: E402
from models.model import TrimodalModel, checkpoint_hash  # noqa: E402
from tests.index import test_build_search as build_tests  # noqa: E402

corpus = build_tests.corpus
ckpt = build_tests.ckpt
items_of = build_tests.items_of


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """Head (no CPUs: it only schedules) + two worker nodes of one CPU each, all on 127.0.0.1."""
    from ray.cluster_utils import Cluster

    c = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 0,
            "include_dashboard": False,
            "object_store_memory": 200 * 1024 * 1024,
        },
    )
    for _ in range(2):
        c.add_node(num_cpus=1, object_store_memory=200 * 1024 * 1024)
    c.wait_for_nodes()
    assert c.address.startswith("127.0.0.1:"), c.address
    try:
        yield c.address
    finally:
        if ray.is_initialized():
            ray.shutdown()
        c.shutdown()


@pytest.fixture(scope="module")
def local_build(corpus, ckpt, tmp_path_factory):
    root = tmp_path_factory.mktemp("local")
    model = TrimodalModel.load(ckpt)
    report = build_index(
        root, items_of(corpus), model, checkpoint_hash(ckpt), workers=1, shard_size=3
    )
    return root, report


def _build_on_ray(address: str, corpus: Path, ckpt: Path, root: Path, **runner_kw):
    model = TrimodalModel.load(ckpt)
    runner = RayRunner(address, ckpt, device="cpu", **runner_kw)
    return build_index(
        root, items_of(corpus), model, checkpoint_hash(ckpt), shard_size=3, runner=runner
    )


def _same_index(a: Path, b: Path) -> None:
    va, vb = IndexVersion.open(a), IndexVersion.open(b)
    assert va.items().ids() == vb.items().ids()
    for store in ("visual", "audio", "visual.pooled", "audio.pooled"):
        sa, sb = va.sequences(store), vb.sequences(store)
        assert len(sa) == len(sb)
        for row in range(len(sa)):
            x, y = np.asarray(sa.get(row), np.float32), np.asarray(sb.get(row), np.float32)
            assert x.shape == y.shape, (store, row)
            np.testing.assert_allclose(x, y, atol=2e-3, rtol=0)  # float16 steps
    sa, sb = Searcher(va), Searcher(vb)
    for item_id in va.items().ids():
        for using, target in (("audio", "video"), ("visual", "audio")):
            qa, qb = sa.item_query(item_id, using), sb.item_query(item_id, using)
            ha = [h.id for h in sa.search(qa, target, k=5).hits]
            hb = [h.id for h in sb.search(qb, target, k=5).hits]
            assert ha == hb, (item_id, using)


def test_ray_build_equals_the_single_machine_build(cluster, corpus, ckpt, local_build, tmp_path):
    local_root, local_report = local_build
    report = _build_on_ray(cluster, corpus, ckpt, tmp_path / "ray")
    assert verify(tmp_path / "ray") == []
    assert report.items == local_report.items == 10
    # The corrupt files are reported with their reason, not fatal.
    assert set(report.failed) == set(local_report.failed) == {"broken", "notes"}
    assert report.failed["notes"].startswith("unknown_format")
    _same_index(local_root, tmp_path / "ray")


def _encoder_pids() -> list[int]:
    """Processes of live encoder actors (Ray titles an actor's worker process `ray::Class`)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if cmdline.startswith(b"ray::ShardEncoder"):
            pids.append(int(proc.name))
    return pids


def test_a_worker_killed_mid_build_costs_at_most_its_shard(
    cluster, corpus, ckpt, local_build, tmp_path
):
    """kill -9 of the encoder actor's process while shards are being made: Ray restarts it, its
    shard is done again, and the index is complete and equal to the single-machine one."""
    local_root, _ = local_build
    root = tmp_path / "ray-killed"
    killed: list[int] = []

    def killer() -> None:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if any(root.glob(".work/*/shards/shard-*.npz")):  # the build is under way
                pids = _encoder_pids()
                if pids:
                    os.kill(pids[0], signal.SIGKILL)
                    killed.append(pids[0])
                    return
            time.sleep(0.05)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    report = _build_on_ray(cluster, corpus, ckpt, root, encoders=1, in_flight_per_encoder=1)
    thread.join(5)
    assert killed, "no encoder process was killed: the build finished first"
    assert not any(root.glob(".work/*")), "published: its work dir is removed"
    assert report.items == 10 and set(report.failed) == {"broken", "notes"}
    _same_index(local_root, root)


def test_resume_skips_the_shards_already_written(cluster, corpus, ckpt, tmp_path):
    """A build stopped after some shards, restarted with --resume: only the rest are made."""
    root = tmp_path / "ray-resume"
    items = items_of(corpus)
    model = TrimodalModel.load(ckpt)
    work = default_work_dir(root, items, 3, checkpoint_hash(ckpt), "build")
    plan = plan_shards(items, checkpoint_hash(ckpt), work, 3, resume=False)
    from index.embed import LocalRunner

    first = plan.pending()[:2]  # as if the first run had committed two shards, then died
    LocalRunner(1).run(_Partial(plan, first), model, 16)
    report = build_index(
        root,
        items,
        model,
        checkpoint_hash(ckpt),
        shard_size=3,
        resume=True,
        runner=RayRunner(cluster, ckpt, device="cpu"),
    )
    assert report.resumed_shards == 2  # found in its keyed work dir, not made again
    assert report.items == 10


class _Partial:
    """A plan restricted to some shards (to play the first, interrupted run)."""

    def __init__(self, plan, shards: list[int]) -> None:
        self._plan, self._shards = plan, shards
        self.items, self.shard_size, self.paths = plan.items, plan.shard_size, plan.paths

    def chunk(self, j: int):
        return self._plan.chunk(j)

    def pending(self) -> list[int]:
        return [j for j in self._shards if not self.paths[j].exists()]


def test_layout_leaves_cpus_for_decoding(cluster, ckpt) -> None:
    shape = RayRunner(cluster, ckpt, device="cpu").layout()
    assert shape["encoders"] == 1 and shape["num_gpus"] == 0
    assert shape["num_cpus"] + shape["decode_cpus"] <= 2.0 and shape["decode_cpus"] > 0
    two = RayRunner(cluster, ckpt, device="cpu", encoders=2).layout()
    assert 2 * two["num_cpus"] + two["decode_cpus"] <= 2.0 + 1e-9 and two["decode_cpus"] > 0


def test_parse_address() -> None:
    assert parse_address(None) is None
    for ok in ("auto", "local", "127.0.0.1:6379", "ray://head:10001"):
        assert parse_address(ok) == ok
    with pytest.raises(ValueError, match="--ray"):
        parse_address("somewhere")


def test_cli_build_with_ray(cluster, corpus, ckpt, local_build, tmp_path) -> None:
    """`trimodal index build --ray ADDRESS`: the same index as the single-machine build."""
    from typer.testing import CliRunner

    from service.cli import app

    local_root, _ = local_build
    manifest = corpus / "manifest.jsonl"  # the corpus without the two broken extras
    args = ["index", "build", "--manifest", str(manifest), "--ckpt", str(ckpt)]
    args += ["--out", str(tmp_path / "cli"), "--device", "cpu", "--shard-size", "3"]
    result = CliRunner().invoke(app, [*args, "--ray", cluster])
    assert result.exit_code == 0, result.output
    _same_index(local_root, tmp_path / "cli")
    bad = CliRunner().invoke(app, [*args, "--ray", "nowhere"])
    assert bad.exit_code != 0 and "--ray" in bad.output
