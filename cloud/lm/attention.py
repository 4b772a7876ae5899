"""Attention as a swappable module per layer: the `AttentionLayer` interface, softmax attention, the slot.

Softmax attention is grouped-query attention (Ainslie et al. 2023) with rotary position
embeddings (Su et al. 2021, RoFormer), over a paged KV cache (Kwon et al. 2023, vLLM).
Each decoder layer holds an `AttentionSlot`: one or more `AttentionLayer`s keyed by kind
name ("softmax" built in; DSLA adds a linear-attention kind whose cache is a recurrent
state), and the kind that new sequences use. Which kind serves a sequence is decided per
sequence: the engine's conversion hook moves a sequence in flight to another kind
(`AttentionLayer.convert_from`), and a revert only changes what new sequences get.
"""

from __future__ import annotations

import enum
import math
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from tether.cloud.lm import packed
from tether.cloud.lm.config import ModelConfig

if TYPE_CHECKING:
    from tether.cloud.lm.batch import AttentionBatch, StepBatch

__all__ = [
    "AttentionLayer",
    "AttentionSlot",
    "CacheKind",
    "SoftmaxAttention",
    "apply_rope",
    "rope_frequencies",
]


class CacheKind(str, enum.Enum):
    """The cache an attention kind keeps per sequence at its layer."""

    PAGED_KV = "paged_kv"  # K and V per token in blocks of the engine's KV pool; grows with the sequence
    STATE = "state"  # a fixed-size recurrent state (tensors the layer defines); constant in the length


# --- rotary position embeddings ------------------------------------------------------------------


def rope_frequencies(head_dim: int, base: float) -> torch.Tensor:
    """Inverse frequencies (head_dim / 2,): base^(-2i / head_dim)."""
    return 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))


def rope_tables(positions: torch.Tensor, inv_freq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin of shape positions.shape + (head_dim,), halves repeated (the HF convention)."""
    angles = positions.to(torch.float32)[..., None] * inv_freq  # (..., hd/2)
    angles = torch.cat((angles, angles), dim=-1)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x (..., heads, head_dim) by position; cos/sin (..., head_dim) broadcast over heads.

    The rotation pairs dimension i with i + head_dim/2 (rotate_half)."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    rotated = torch.cat((-x2, x1), dim=-1)
    return x * cos.unsqueeze(-2) + rotated * sin.unsqueeze(-2)


# --- the interface -------------------------------------------------------------------------------


class AttentionLayer(nn.Module, ABC):
    """One attention implementation of one decoder layer (a "kind"), with the cache it needs.

    Input and output are (tokens, n_embd): the slot applies the RMSNorm before and the
    residual after. Implementations must be stateless across sequences: everything a
    sequence accumulates lives in the cache the engine keeps for it (`cache_kind`).

    When each method is called:

    - `forward_dense(x, cos, sin)`: full sequences with no cache, (B, T, n_embd) in and out,
      causal; for training, distillation and evaluation (`Transformer.forward`). May run
      with gradients.
    - `forward_dense_from(x, cos, sin, past)`: the same, continuing a prefix whose `past` an
      earlier call returned; for scoring several continuations of one prefix (optional: the
      default raises NotImplementedError).
    - `forward_step(x, batch)`: once per engine step, under `torch.inference_mode`, with the
      rows (n, n_embd) of every sequence of the step that uses this kind at this layer.
      `batch` (an `AttentionBatch`) gives positions, RoPE tables, the segments (decode rows
      first, then prefill chunks) and the cache of those sequences at this layer. A
      PAGED_KV kind writes its new K/V with `batch.write_kv` and reads them back with
      `batch.decode_kv` / `batch.context_kv`; a STATE kind reads and updates
      `batch.state(j)` for each sequence j. Side tensors a sequence keeps at this layer
      (`batch.keeps_side(j)`) are written by the slot before this call: `batch.side(j)`.
    - `new_state()`: STATE kinds only. Called by the cache manager when a sequence starts
      (is admitted) with this kind at this layer; returns its initial state, a dict of
      tensors whose shapes do not depend on the sequence's length (they are what export
      and import carry, and what `state_bytes` counts).
    - `convert_from(source, cache)`: the conversion hook. Called between steps when the
      engine converts this layer to this kind for a sequence in flight that uses `source`
      at this layer. `cache` holds that sequence's cache at this layer in export form: for
      a PAGED_KV source `{"k": (T, n_kv_head, head_dim), "v": ...}` with K after RoPE,
      plus `{"side.x": (T, n_embd)}` when the sequence kept the layer's inputs (see
      `AttentionSlot.keep_inputs`), where T is the number of cached tokens. Return this
      kind's cache for the sequence: a state dict for a STATE kind. The engine then frees
      the source's blocks. Raise `NotImplementedError` when the conversion cannot be
      done; the engine reports it and the sequence keeps its kind.
    """

    cache_kind: ClassVar[CacheKind] = CacheKind.PAGED_KV

    @abstractmethod
    def forward_dense(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def forward_step(self, x: torch.Tensor, batch: AttentionBatch) -> torch.Tensor: ...

    def forward_dense_from(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, past: dict[str, torch.Tensor] | None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """`forward_dense` continued after a prefix: `past` is what this call returned for the prefix
        (batch 1, shared by every row of x, or batch B), None at the start; `cos`/`sin` are the
        positions of x. Returns the output and the `past` of prefix and x together. Scoring several
        continuations of one prefix this way runs the prefix once (no gradients needed)."""
        raise NotImplementedError(f"{type(self).__name__} cannot continue a dense forward from a prefix")

    def new_state(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError(f"{type(self).__name__} keeps a {self.cache_kind.value} cache, not a state")

    def state_bytes(self) -> int:
        """Bytes of one sequence's state (STATE kinds); for memory accounting."""
        return sum(t.numel() * t.element_size() for t in self.new_state().values())

    def convert_from(self, source: AttentionLayer, cache: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        raise NotImplementedError(
            f"{type(self).__name__} cannot take over a sequence in flight from {type(source).__name__}; "
            "a layer reverted to softmax attention serves new sequences only"
        )


# --- softmax attention ----------------------------------------------------------------------------


class SoftmaxAttention(AttentionLayer):
    """Grouped-query softmax attention with RoPE over paged K/V.

    The q, k and v projections are one matrix `wqkv` ((n_head + 2 n_kv_head) * head_dim,
    n_embd), rows in that order, so a token costs one matmul; `projections()` gives the
    separate views (Hugging Face layout) for code that needs the teacher's weights.
    """

    cache_kind = CacheKind.PAGED_KV

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_head, self.n_kv_head, self.head_dim = cfg.n_head, cfg.n_kv_head, cfg.head_dim
        self.group = cfg.n_head // cfg.n_kv_head
        self.scale = 1.0 / math.sqrt(cfg.head_dim)
        qkv_out = (cfg.n_head + 2 * cfg.n_kv_head) * cfg.head_dim
        self.wqkv = nn.Parameter(torch.empty(qkv_out, cfg.n_embd))
        self.wo = nn.Parameter(torch.empty(cfg.n_embd, cfg.n_head * cfg.head_dim))

    def projections(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Views (wq, wk, wv, wo), each (out, in)."""
        hq, hk = self.n_head * self.head_dim, self.n_kv_head * self.head_dim
        return self.wqkv[:hq], self.wqkv[hq : hq + hk], self.wqkv[hq + hk :], self.wo

    def _qkv(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        """x (..., n_embd) -> q (..., n_head, hd), k, v (..., n_kv_head, hd); q and k rotated."""
        h, kvh, hd = self.n_head, self.n_kv_head, self.head_dim
        qkv = packed.linear(x, self.wqkv)  # F.linear, or oneDNN on packed weights inside an engine step
        qk = qkv[..., : (h + kvh) * hd].unflatten(-1, (h + kvh, hd))
        qk = apply_rope(qk, cos, sin)  # q and k rotated together: one set of ops
        v = qkv[..., (h + kvh) * hd :].unflatten(-1, (kvh, hd))
        return qk[..., :h, :], qk[..., h:, :], v

    def forward_dense(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        return self.forward_dense_from(x, cos, sin, None)[0]  # causal over x alone

    def forward_dense_from(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, past: dict[str, torch.Tensor] | None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Keys and values of the prefix (`past["k"]`, `past["v"]`: (B or 1, P, n_kv_head, hd)) in front of x's."""
        B, T, _ = x.shape
        q, k, v = self._qkv(x, cos, sin)  # (B, T, heads, hd)
        attend = None
        if past is not None:
            k = torch.cat((past["k"].expand(B, -1, -1, -1), k), 1)
            v = torch.cat((past["v"].expand(B, -1, -1, -1), v), 1)
            P = k.shape[1] - T
            attend = torch.ones(T, P + T, dtype=torch.bool).tril(P)  # x's token i: the prefix and x[: i + 1]
        y = F.scaled_dot_product_attention(
            q.transpose(1, 2),
            k.transpose(1, 2),
            v.transpose(1, 2),
            attn_mask=attend,
            is_causal=attend is None,
            enable_gqa=True,
        )  # (B, n_head, T, hd)
        return F.linear(y.transpose(1, 2).reshape(B, T, -1), self.wo), {"k": k, "v": v}

    def forward_step(self, x: torch.Tensor, batch: AttentionBatch) -> torch.Tensor:
        n = x.shape[0]
        h, kvh, hd, g = self.n_head, self.n_kv_head, self.head_dim, self.group
        q, k, v = self._qkv(x, batch.cos, batch.sin)  # (n, h, hd), (n, kvh, hd), (n, kvh, hd)
        batch.write_kv(k, v)
        nd = batch.num_decode
        if nd:
            # All decode rows at once: (kvh, nd, g, hd) @ (kvh, nd, hd, T) -> (kvh, nd, g, T).
            K, V, mask = batch.decode_kv()
            qd = q[:nd].reshape(nd, kvh, g, hd).transpose(0, 1)
            att = torch.matmul(qd, K.transpose(-1, -2)).mul_(self.scale)
            if mask is not None:
                att.add_(mask)
            y = torch.matmul(att.softmax(dim=-1), V).transpose(0, 1).reshape(nd, h * hd)  # (nd, h * hd)
            if nd == n:  # a decode-only step: no buffer to assemble
                return packed.linear(y, self.wo)
        out = torch.empty(n, h, hd)
        if nd:
            out[:nd] = y.view(nd, h, hd)
        for j, (row, length, context) in enumerate(batch.segments[nd:], start=nd):
            qj = q[row : row + length].transpose(0, 1).unsqueeze(0)  # (1, h, length, hd)
            if context == 0:
                kj = k[row : row + length].transpose(0, 1).unsqueeze(0)  # (1, kvh, length, hd)
                vj = v[row : row + length].transpose(0, 1).unsqueeze(0)
                y = F.scaled_dot_product_attention(qj, kj, vj, is_causal=True, enable_gqa=True)
            else:
                K, V = batch.context_kv(j)  # (kvh, context + length, hd)
                # Query i sits at position context + i and sees keys 0 .. context + i.
                keep = torch.ones(length, context + length, dtype=torch.bool).tril_(diagonal=context)
                y = F.scaled_dot_product_attention(qj, K[None], V[None], attn_mask=keep, enable_gqa=True)
            out[row : row + length] = y[0].transpose(0, 1)
        return packed.linear(out.view(n, h * hd), self.wo)


# --- the slot: the kinds one layer can take -----------------------------------------------------


class AttentionSlot(nn.Module):
    """The attention of one decoder layer: its kinds, the kind new sequences get, its side tensors.

    `impls` maps kind name to `AttentionLayer` ("softmax" always there). `active` is the
    kind a sequence gets when it starts. `keep_inputs`: new sequences keep this layer's
    input rows x_t (n_embd each, after the RMSNorm) as side tensors named "x", so the layer
    can later be converted for them with their whole history (DSLA folds a KV cache into
    a state from them). Changing either affects sequences that start afterwards only.
    """

    def __init__(self, layer: int, softmax: SoftmaxAttention) -> None:
        super().__init__()
        self.layer = layer
        self.impls = nn.ModuleDict({"softmax": softmax})
        self.active = "softmax"
        self.keep_inputs = False

    def add_kind(self, name: str, impl: AttentionLayer) -> None:
        """Register another kind (both weight sets stay resident: a swap is a dictionary lookup)."""
        if not isinstance(impl, AttentionLayer):
            raise TypeError(
                f"layer {self.layer}: kind {name!r} must be an AttentionLayer, got {type(impl).__name__}"
            )
        self.impls[name] = impl

    def impl(self, name: str) -> AttentionLayer:
        if name not in self.impls:
            raise KeyError(f"layer {self.layer} has no attention kind {name!r}; known: {sorted(self.impls)}")
        return self.impls[name]

    def forward_dense(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        return self.impls[self.active].forward_dense(x, cos, sin)

    def forward_dense_from(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, past: dict[str, torch.Tensor] | None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.impls[self.active].forward_dense_from(x, cos, sin, past)

    def forward_step(self, x: torch.Tensor, step: StepBatch) -> torch.Tensor:
        side = step.side_writes.get(self.layer)
        if side is not None:
            rows, slots = side
            step.cache.write_side(slots, x.index_select(0, rows))
        kind = step.uniform_kind[self.layer]
        if kind is not None:
            return self.impls[kind].forward_step(x, step.layer(self.layer))
        groups: dict[str, list[int]] = {}
        for i, seq in enumerate(step.seqs):
            groups.setdefault(seq.kinds[self.layer], []).append(i)
        out = torch.empty_like(x)
        for name, idx in groups.items():
            sub = step.layer(self.layer, idx)
            out.index_copy_(0, sub.rows, self.impls[name].forward_step(x.index_select(0, sub.rows), sub))
        return out
