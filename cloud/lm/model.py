"""A Llama-family decoder in the spirit of nanoGPT: RMSNorm, RoPE, grouped-query attention, SwiGLU.

Llama (Touvron et al. 2023) = pre-norm transformer blocks with RMSNorm (Zhang & Sennrich
2019), rotary embeddings (Su et al. 2021), grouped-query attention (Ainslie et al. 2023)
and a SwiGLU feed-forward (Shazeer 2020). Each block's attention is an `AttentionSlot`
whose kinds are swappable per layer (attention.py). Three ways to run it:

- `forward(tokens)`: (B, T) -> logits (B, T, vocab), no cache; for training and evaluation.
- `forward_from(tokens, past)`: the same, continuing a prefix run earlier (its keys and values,
  or linear states, carried in `past`); for scoring several continuations of one prefix.
- `forward_step(step)`: one engine step over the flattened tokens of many sequences with
  the paged cache (batch.py); logits only for the rows that need them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tether.cloud.lm import packed
from tether.cloud.lm.attention import AttentionSlot, SoftmaxAttention, rope_frequencies, rope_tables
from tether.cloud.lm.batch import StepBatch
from tether.cloud.lm.checkpoint import Checkpoint, CheckpointError
from tether.cloud.lm.config import ModelConfig

__all__ = ["MLP", "Block", "Past", "RMSNorm", "Transformer"]


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, self.weight.shape, self.weight, self.eps)


class MLP(nn.Module):
    """SwiGLU: down(silu(gate x) * up x); gate and up are one matrix (2 ffn_dim, n_embd)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.ffn_dim = cfg.ffn_dim
        self.w_gate_up = nn.Parameter(torch.empty(2 * cfg.ffn_dim, cfg.n_embd))
        self.w_down = nn.Parameter(torch.empty(cfg.n_embd, cfg.ffn_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate_up = packed.linear(x, self.w_gate_up)  # F.linear outside an engine step
        gate, up = gate_up[..., : self.ffn_dim], gate_up[..., self.ffn_dim :]
        return packed.linear(F.silu(gate) * up, self.w_down)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.attn = AttentionSlot(layer, SoftmaxAttention(cfg))
        self.mlp_norm = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.attn.forward_dense(self.attn_norm(x), cos, sin)
        return x + self.mlp(self.mlp_norm(x))

    def forward_from(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, past: dict[str, torch.Tensor] | None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        y, past = self.attn.forward_dense_from(self.attn_norm(x), cos, sin, past)
        x = x + y
        return x + self.mlp(self.mlp_norm(x)), past

    def forward_step(self, x: torch.Tensor, step: StepBatch) -> torch.Tensor:
        x = x + self.attn.forward_step(self.attn_norm(x), step)
        return x + self.mlp(self.mlp_norm(x))


@dataclass
class Past:
    """What `Transformer.forward_from` carries from a prefix: its length and, per layer, the
    active kind's `forward_dense_from` past (keys and values, or linear states)."""

    length: int
    layers: list[dict[str, torch.Tensor]]


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.config = cfg
        # Uninitialised like every other parameter here (checkpoint or `random` fills them): no N(0, 1)
        # draw of vocab x n_embd values (~0.7 s for SmolLM2) that would be overwritten at once.
        self.tok_emb = nn.Embedding(
            cfg.vocab_size, cfg.n_embd, _weight=torch.empty(cfg.vocab_size, cfg.n_embd)
        )
        self.layers = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layer))
        self.norm = RMSNorm(cfg.n_embd, cfg.norm_eps)
        # Tied embeddings (SmolLM2): the output projection is the embedding matrix itself.
        self.lm_head = None if cfg.tie_embeddings else nn.Parameter(torch.empty(cfg.vocab_size, cfg.n_embd))
        self.register_buffer("inv_freq", rope_frequencies(cfg.head_dim, cfg.rope_base), persistent=False)
        self._rope: tuple[torch.Tensor, torch.Tensor] | None = None  # cos, sin of positions 0 .. P-1 (P, hd)

    @property
    def output_weight(self) -> torch.Tensor:
        return self.tok_emb.weight if self.lm_head is None else self.lm_head

    @property
    def slots(self) -> list[AttentionSlot]:
        return [b.attn for b in self.layers]

    @classmethod
    def from_checkpoint(cls, ckpt: Checkpoint) -> Transformer:
        """Build the model and copy the checkpoint's float32 weights in (q, k, v and gate, up fused)."""
        model = cls(ckpt.config)
        w = ckpt.weights

        def get(name: str) -> torch.Tensor:
            if name not in w:
                raise CheckpointError(f"{ckpt.path}: weight {name!r} is missing")
            return w[name]

        with torch.no_grad():
            model.tok_emb.weight.copy_(get("embed"))
            model.norm.weight.copy_(get("norm"))
            if model.lm_head is not None:
                model.lm_head.copy_(get("lm_head"))
            for i, block in enumerate(model.layers):
                p = f"layers.{i}."
                attn = block.attn.impls["softmax"]
                attn.wqkv.copy_(torch.cat([get(p + "q"), get(p + "k"), get(p + "v")]))
                attn.wo.copy_(get(p + "o"))
                block.mlp.w_gate_up.copy_(torch.cat([get(p + "gate"), get(p + "up")]))
                block.mlp.w_down.copy_(get(p + "down"))
                block.attn_norm.weight.copy_(get(p + "attn_norm"))
                block.mlp_norm.weight.copy_(get(p + "mlp_norm"))
        return model.eval()

    @classmethod
    def random(cls, cfg: ModelConfig, seed: int = 0) -> Transformer:
        """A model with random weights (tests, sizing): N(0, 1/fan_in) matrices, unit norms, so
        logits are spread out and greedy choices are not near ties."""
        gen = torch.Generator().manual_seed(seed)
        model = cls(cfg)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.endswith("norm.weight"):
                    p.fill_(1.0)
                else:
                    p.copy_(torch.randn(p.shape, generator=gen) / p.shape[-1] ** 0.5)
            model.tok_emb.weight.mul_(cfg.n_embd**0.5)  # unit-variance embeddings
        return model.eval()

    def forward(self, tokens: torch.Tensor, *, return_hidden: bool = False):
        """tokens (B, T) -> logits (B, T, vocab); with `return_hidden`, also the input of every
        block and the final normed hidden state: a list of n_layer + 1 tensors (B, T, n_embd)."""
        T = tokens.shape[1]
        cos, sin = rope_tables(torch.arange(T), self.inv_freq)  # (T, hd)
        x = self.tok_emb(tokens)
        hidden = []
        for block in self.layers:
            hidden.append(x)
            x = block(x, cos, sin)
        x = self.norm(x)
        hidden.append(x)
        logits = F.linear(x, self.output_weight)
        return (logits, hidden) if return_hidden else logits

    def forward_from(self, tokens: torch.Tensor, past: Past | None = None) -> tuple[torch.Tensor, Past]:
        """tokens (B, T) continuing a prefix -> (the final normed hidden state (B, T, n_embd), the
        `Past` of prefix and tokens together). `past` is what an earlier call returned (batch 1 is
        shared by every row); None starts at position 0. For scoring several continuations of one
        prefix (multiple-choice items) with the prefix run once; `forward` for whole sequences."""
        start = 0 if past is None else past.length
        T = tokens.shape[1]
        cos, sin = rope_tables(torch.arange(start, start + T), self.inv_freq)
        x = self.tok_emb(tokens)
        layers = []
        for j, block in enumerate(self.layers):
            x, p = block.forward_from(x, cos, sin, None if past is None else past.layers[j])
            layers.append(p)
        return self.norm(x), Past(start + T, layers)

    def forward_step(self, step: StepBatch, *, packed_weights: bool = True) -> torch.Tensor:
        """One engine step -> logits (len(step.logit_rows), vocab) for the rows that sample.

        `packed_weights`: the GEMMs run on oneDNN-packed copies of the weights (packed.py);
        off, they are plain `F.linear` (the same numbers to float32 rounding)."""
        step.cos, step.sin = self._rope_rows(step)  # (N, hd), shared by every layer
        with packed.enabled(packed_weights):
            x = self.tok_emb(step.token_ids)  # (N, n_embd)
            for block in self.layers:
                x = block.forward_step(x, step)
            x = self.norm(x.index_select(0, step.logit_rows))  # only the rows whose next token we sample
            return packed.linear(x, self.output_weight)

    def _rope_rows(self, step: StepBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin of the step's positions, read from a table that grows (doubling) to the longest
        position seen: what `rope_tables` gives (to float32 rounding), not recomputed every step."""
        need = max(c + n for c, n in zip(step.context, step.lengths, strict=True))
        if (
            self._rope is None
            or self._rope[0].shape[0] < need
            or self._rope[0].device != self.inv_freq.device
        ):
            size = max(need, 2 * (self._rope[0].shape[0] if self._rope is not None else 256))
            self._rope = rope_tables(torch.arange(size, device=self.inv_freq.device), self.inv_freq)
        cos, sin = self._rope
        return cos.index_select(0, step.positions), sin.index_select(0, step.positions)
