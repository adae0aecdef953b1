"""The index build's shard stages on a Ray cluster: decoding on CPU workers, encoding on actors.

Only the runner differs from the single-machine build (`index.embed.LocalRunner`); the stages are
the same functions: `index.reader.read_item` decodes an item, `index.embed.embed_shard` encodes a
shard's items and writes the shard file, in the same format, with the same atomic rename.

    decode_shard (Ray task, 1 CPU)  ──decoded items──▶  ShardEncoder.embed (Ray actor, 1 GPU or
                                                       CPUs; the model loaded once per actor)

Every node must see the corpus, the checkpoint and the work directory at the same paths (one
machine, NFS, a cloud file system): workers read media and write shards themselves.

Fault tolerance: a shard is one unit of work. Decode tasks are retried by Ray; encoder actors are
restarted by Ray and their calls retried; a shard whose attempts are all used up is submitted
again from the start (another decode, another actor) up to `shard_attempts` times. A killed
worker therefore costs at most the shard it was working on, and a half-written shard never
counts (only the final rename makes it exist). A whole build stopped and restarted with
`--resume` skips the shards already on disk (`ShardPlan.pending`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from index.embed import ShardPlan
from index.reader import CorpusItem, Decoded, read_item
from models.media import Fit
from models.model import TrimodalModel

log = logging.getLogger("trimodal.index")


def decode_shard(
    items: Sequence[CorpusItem],
    fps: float,
    image_size: int,
    sample_rate: int,
    fit: Fit = "pad",
    shapes: bool = False,
) -> list[Decoded]:
    """Stage 1, on a CPU worker: decode one shard's items (a refused file is an error record;
    `shapes`: their glyphs' outlines measured too, `index.reader.read_item`)."""
    return [read_item(item, fps, image_size, sample_rate, fit, shapes) for item in items]


class ShardEncoder:
    """Stage 2, one per GPU (or a share of the CPUs): loads the checkpoint once, then encodes
    shards and writes them."""

    def __init__(self, ckpt: str, device: str, threads: int) -> None:
        import torch

        from training.trainer import resolve_device

        torch.set_num_threads(max(1, threads))
        self.model = TrimodalModel.load(Path(ckpt), resolve_device(device)).eval()

    def embed(self, path: str, parts: list[Any], batch_size: int) -> tuple[int, int]:
        """`parts`: the refs of the shard's decode tasks, in order (fetched one at a time, so a
        shard's decoded frames are never all in this process at once)."""
        import ray

        from index.embed import embed_shard

        def decoded() -> Iterator[Decoded]:
            for ref in parts:
                yield from ray.get(ref)

        return embed_shard(Path(path), decoded(), self.model, batch_size)


@dataclass
class RayRunner:
    """Runs `plan`'s pending shards over a Ray cluster.

    address: a cluster (`auto`, `HOST:PORT`, `ray://HOST:10001`) or "local" (start Ray on this
      machine). encoders: actors (default: one per GPU, else a quarter of the CPUs, at least 1).
    encoder_cpus: CPUs each encoder actor reserves (and its torch threads) when it has no GPU.
    """

    address: str
    ckpt: Path
    device: str = "auto"
    encoders: int | None = None
    encoder_cpus: float = 1.0
    decode_chunk: int = 16
    in_flight_per_encoder: int = 2
    task_retries: int = 3
    shard_attempts: int = 3

    def _init(self) -> Any:
        import ray

        if not ray.is_initialized():
            address = None if self.address == "local" else self.address
            ray.init(
                address=address,
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.WARNING,
            )
        return ray

    def layout(self) -> dict[str, Any]:
        """Encoder actors and what each reserves, on the cluster as it is now: one per GPU, or
        a quarter of the CPUs; CPUs are always left for the decode tasks (else they would wait
        forever behind the actors)."""
        ray = self._init()
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        cpus = float(resources.get("CPU", 0))
        if cpus <= 0:
            raise RuntimeError("the Ray cluster has no CPUs for decoding")
        if self.device != "cpu" and gpus > 0:
            n = self.encoders or gpus
            per_cpu = min(1.0, cpus / (2 * n))
            return {
                "encoders": n,
                "num_gpus": 1,
                "num_cpus": per_cpu,
                "threads": 1,
                "decode_cpus": min(1.0, cpus - n * per_cpu),
            }
        n = self.encoders or max(1, int(cpus // 4))
        per = self.encoder_cpus
        if n * per > cpus - 1:  # leave one CPU (or half of a small cluster) to decoding
            per = max(cpus - 1, cpus / 2) / n
        return {
            "encoders": n,
            "num_gpus": 0,
            "num_cpus": per,
            "threads": max(1, int(per)),
            "decode_cpus": min(1.0, cpus - n * per),
        }

    def run(
        self,
        plan: ShardPlan,
        model: TrimodalModel,
        batch_size: int,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> None:
        pending = plan.pending()
        if not pending:
            return
        ray = self._init()
        cfg = model.cfg
        shape = self.layout()
        device = "cuda" if shape["num_gpus"] else "cpu"
        decode = ray.remote(decode_shard).options(
            num_cpus=shape["decode_cpus"], max_retries=self.task_retries
        )
        actor = ray.remote(ShardEncoder).options(
            num_cpus=shape["num_cpus"],
            num_gpus=shape["num_gpus"],
            max_restarts=-1,  # a killed actor process comes back (and loads the model again)
            max_task_retries=self.task_retries,
        )
        actors = [
            actor.remote(str(Path(self.ckpt).resolve()), device, shape["threads"])
            for _ in range(shape["encoders"])
        ]
        log.info("ray build: %d shards on %d encoder actors (%s)", len(pending), len(actors), shape)
        args = (
            cfg.visual.fps,
            cfg.visual.image_size,
            cfg.audio.sample_rate,
            cfg.visual.fit,
            model.knows_glyphs(),
        )
        queue = list(pending)
        attempts = dict.fromkeys(pending, 0)
        running: dict[Any, int] = {}  # result ref -> shard
        total = len(plan.items)
        done_items = (len(plan.paths) - len(pending)) * plan.shard_size
        turn = 0
        limit = self.in_flight_per_encoder * len(actors)
        try:
            while queue or running:
                while queue and len(running) < limit:
                    j = queue.pop(0)
                    attempts[j] += 1
                    chunk = list(plan.chunk(j))
                    step = max(1, self.decode_chunk)
                    parts = [
                        decode.remote(chunk[i : i + step], *args)
                        for i in range(0, len(chunk), step)
                    ]
                    target = actors[turn % len(actors)]
                    turn += 1
                    # Refs inside a list are passed as refs (not resolved): the actor fetches them.
                    running[target.embed.remote(str(plan.paths[j]), parts, batch_size)] = j
                ready, _ = ray.wait(list(running), num_returns=1)
                for ref in ready:
                    j = running.pop(ref)
                    try:
                        ray.get(ref)
                    except (ray.exceptions.RayError, OSError) as e:
                        if attempts[j] >= self.shard_attempts:
                            raise RuntimeError(
                                f"shard {plan.paths[j].name} failed {attempts[j]} times: {e}"
                            ) from e
                        log.warning("shard %s failed (%s); submitting it again", j, e)
                        queue.append(j)
                        continue
                    done_items += len(plan.chunk(j))
                    if on_progress:
                        on_progress(min(done_items, total), total)
        finally:
            for a in actors:
                ray.kill(a)


def parse_address(value: str | None) -> str | None:
    """`--ray` values: None (no Ray), `auto`, `local`, `HOST:PORT` or `ray://HOST:PORT`."""
    if value is None or value == "":
        return None
    if value in ("auto", "local") or value.startswith("ray://") or ":" in value:
        return value
    raise ValueError(f"--ray: expected auto, local, HOST:PORT or ray://HOST:PORT, got {value!r}")
