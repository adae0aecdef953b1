"""The frozen text tower through ONNX Runtime: the same sentence vectors, a fraction of the latency.

A search spends most of its time encoding the query sentence; torch runs the 6-layer MiniLM one
small op at a time, ONNX Runtime fuses them. The tower is exported once (torch.onnx, the
TorchScript exporter: no extra dependency) into a cache directory keyed by the tower's identity,
and every later start loads the file. Parity with the torch tower is tested.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from models.spare import SPARE
from models.text import TextBackbone, mean_of_states

OPSET = 17
# What the export and the quantiser say on every first start, about cases this tower never meets:
# the tracer, that a Python condition on a tensor (the padding and causal-mask checks of
# transformers' attention) is taken as a constant, which the ragged-batch parity test covers; the
# exporter, that negative indices would gather wrongly (the tower indexes with none); the
# quantiser, that a model could be pre-processed first (`quantize`'s note on accuracy). Kept out
# of a user's first `trimodal serve`; any other warning still shows.
_TRACER_NOTES = (
    r"Converting a tensor to a Python boolean might cause the trace to be incorrect",
    r"Exporting aten::index operator of advanced indexing",
)
_QUANTIZER_NOTE = "Please consider to run pre-processing before quantization"


@contextlib.contextmanager
def _known_notes_quiet() -> Iterator[None]:
    """Silence `_TRACER_NOTES` and `_QUANTIZER_NOTE` (logged by onnxruntime on the root logger)
    for the duration; nothing else."""

    def drop(record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(_QUANTIZER_NOTE)

    root = logging.getLogger()
    root.addFilter(drop)
    try:
        with warnings.catch_warnings():
            for note in _TRACER_NOTES:
                warnings.filterwarnings("ignore", message=note)
            yield
    finally:
        root.removeFilter(drop)


def session_options(threads: int = 1, spin: bool = False) -> Any:
    """ONNX Runtime options for query encoding inside a server.

    `threads`: intra-op threads per call. `spin`: whether idle pool threads busy-wait for the next
    parallel section; off here, since between a query's ops the cores belong to other requests.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    if spin:  # spinning inside a call only: once it returns, the cores are other requests'
        options.add_session_config_entry("session.force_spinning_stop", "1")
    return options


def _identity(backbone: TextBackbone) -> str:
    """What makes two towers the same: config, and a digest of the weights themselves."""
    digest = hashlib.sha256()
    config: Any = getattr(backbone.model, "config", None)
    described = config.to_dict() if config is not None else {}
    digest.update(json.dumps(described, sort_keys=True, default=str).encode())
    for name, tensor in sorted(backbone.model.state_dict().items()):  # ~0.2 s for MiniLM
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    digest.update(str(backbone.cfg.max_length).encode())
    return digest.hexdigest()[:20]


def export(backbone: TextBackbone, path: Path) -> Path:
    """Write the transformer (token ids, attention mask → last hidden state) as ONNX."""
    # Exported from a copy: tracing changes state inside a transformers model (the live tower
    # gave different vectors after an export of itself in the same process).
    model = copy.deepcopy(backbone.model).eval()
    sample = backbone.tokenizer(["a sample sentence", "two"], padding=True, return_tensors="pt")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp-{os.getpid()}")

    class Hidden(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
            return self.inner(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    with torch.no_grad(), _known_notes_quiet():
        torch.onnx.export(
            Hidden(),
            (sample["input_ids"], sample["attention_mask"]),
            str(tmp),
            input_names=["input_ids", "attention_mask"],
            output_names=["hidden"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "tokens"},
                "attention_mask": {0: "batch", 1: "tokens"},
                "hidden": {0: "batch", 1: "tokens"},
            },
            opset_version=OPSET,
            dynamo=False,
        )
    os.replace(tmp, path)  # a half-written export is never taken for a finished one
    return path


def quantize(source: Path, path: Path) -> Path:
    """int8 weights for the tower's matrix products (dynamic quantisation: activations are
    quantised per call). Per output channel: per-tensor scales lost too much (sentence vectors at
    cosine ~0.96 of the float ones, against ~0.99 per channel)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = path.with_suffix(f".tmp-{os.getpid()}")
    with _known_notes_quiet():
        quantize_dynamic(
            source,
            tmp,
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["MatMul"],
        )
    os.replace(tmp, path)
    return path


class OnnxTextBackbone:
    """Drop-in for `TextBackbone.__call__` at inference: texts → mean-pooled (B, hidden).

    `int8`: the tower with int8 weights (about 2x faster per sentence on one core; retrieval
    unchanged within noise on a fresh SynthAV pool: benchmarks/bench_text_int8.py).
    """

    def __init__(
        self,
        backbone: TextBackbone,
        cache_dir: Path,
        threads: int = 1,
        spin: bool = False,
        int8: bool = False,
        lent: int = 0,
    ) -> None:
        import onnxruntime as ort

        self.tokenizer = backbone.tokenizer
        self.max_length = backbone.cfg.max_length
        self.hidden = backbone.hidden
        float_path = Path(cache_dir) / f"text-{_identity(backbone)}.onnx"
        if not float_path.is_file():
            export(backbone, float_path)
        self.path = float_path
        if int8:
            self.path = float_path.with_name(float_path.stem + "-int8.onnx")
            if not self.path.is_file():
                quantize(float_path, self.path)
        self.session = ort.InferenceSession(
            str(self.path), session_options(threads, spin), providers=["CPUExecutionProvider"]
        )
        # A second session on `threads` + `lent` threads, its idle ones spinning, for when
        # that many cores are idle (`models.spare.SPARE.idle`): a lone query's sentence in
        # about 0.7x the time; under load every query keeps to the first.
        self.lent = lent
        self.wide = (
            ort.InferenceSession(
                str(self.path),
                session_options(threads + lent, spin=True),
                providers=["CPUExecutionProvider"],
            )
            if lent > 0
            else None
        )

    def __call__(self, texts: list[str]) -> Tensor:
        return mean_of_states(*self.states(texts))

    def states(self, texts: list[str]) -> tuple[Tensor, Tensor]:
        """As `TextBackbone.states`: (B, L, hidden) token states, (B, L) bool mask."""
        if not texts:
            raise ValueError("no texts to encode")
        batch = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="np"
        )
        ids = batch["input_ids"].astype(np.int64)
        mask = batch["attention_mask"].astype(np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if self.wide is None:
            (hidden,) = self.session.run(["hidden"], feeds)
        else:
            with SPARE.idle(self.lent) as free:
                session = self.wide if free == self.lent else self.session
                (hidden,) = session.run(["hidden"], feeds)
        return torch.from_numpy(np.asarray(hidden, np.float32)), torch.from_numpy(mask > 0)
