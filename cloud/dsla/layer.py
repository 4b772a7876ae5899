"""The DSLA attention layer: two gated linear-attention states per head in place of softmax (arXiv 2506.09316).

Per head (head dim d), for state i in {1, 2} (history, recency):

    g_i(t) = exp(max(log sigmoid(W_i x_t + b_i) / 16, -50))          per key channel
    S_i(t) = diag(g_i(t)) S_i(t-1) + k_t v_t^T                        (d x d)
    o(t)   = sum_i softmax(a)_i (q_t / sqrt d)^T S_i(t),   y_t = W_o o(t)

q, k, v and o start as the teacher layer's projections; k and v stay the teacher's (a view
of its weights, never trained), W_1 starts as the identity, W_2 at nn.Linear's default,
biases and the mixture logits a at 0. A grouped-query teacher's k/v heads are repeated to
the query heads. `n_states=1` is plain GLA (the ablation).

Positions: q and k are rotated by RoPE exactly as the teacher rotates them. That keeps the
layer's scores at initialisation equal to the teacher's logits (pairs of channels with
equal gates see only the relative position, as in softmax attention), and it makes folding
exact: the paged cache holds K after RoPE, which is precisely the k_t the recurrence adds,
so a state folded from the cache plus each token's layer input x_t (for the gates) equals
the state of running this layer over the same inputs from the start (`convert_from`).

The cache is a state per sequence: {"S": (n_states * n_head, d, d)}, constant in length.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from tether.cloud.dsla import gla
from tether.cloud.lm.attention import AttentionLayer, CacheKind, SoftmaxAttention, apply_rope
from tether.cloud.lm.config import ModelConfig

if TYPE_CHECKING:
    from tether.cloud.lm.batch import AttentionBatch

__all__ = ["DSLAttention", "kind_name"]


def kind_name(n_states: int) -> str:
    """The attention-kind name a slot registers: "dsla" (two states) or "gla" (one, the ablation)."""
    return "dsla" if n_states == 2 else "gla"


class DSLAttention(AttentionLayer):
    """Dual-state (or, with n_states=1, single-state) gated linear attention built on a teacher layer."""

    cache_kind = CacheKind.STATE

    def __init__(
        self,
        cfg: ModelConfig,
        teacher: SoftmaxAttention,
        *,
        n_states: int = 2,
        chunk: int = 16,
        temperature: float = 16.0,
    ) -> None:
        super().__init__()
        if n_states not in (1, 2):
            raise ValueError(f"n_states must be 1 (GLA) or 2 (DSLA), but got n_states={n_states}")
        if chunk < 1:
            raise ValueError(f"chunk >= 1 must hold, but got chunk={chunk}")
        self.n_head, self.n_kv_head, self.head_dim = cfg.n_head, cfg.n_kv_head, cfg.head_dim
        self.group = cfg.n_head // cfg.n_kv_head
        self.n_states, self.chunk, self.temperature = n_states, chunk, temperature
        self.scale = 1.0 / math.sqrt(cfg.head_dim)
        hq = cfg.n_head * cfg.head_dim
        wq, _, _, wo = teacher.projections()
        self.wq = nn.Parameter(wq.detach().clone())
        self.wo = nn.Parameter(wo.detach().clone())
        # The teacher's k and v rows, shared (a view, no copy) and frozen: cached K/V stay valid.
        self.register_buffer("wkv", teacher.wqkv.detach()[hq:], persistent=False)
        self.wg = nn.Parameter(torch.empty(n_states * hq, cfg.n_embd))  # gate projections, states stacked
        self.bg = nn.Parameter(torch.zeros(n_states * hq))
        self.mix = nn.Parameter(torch.zeros(n_states))  # a: the mixture is softmax(a)
        self.reset_gates()

    def reset_gates(self) -> None:
        """W_1 = identity (rectangular when n_embd != heads * d), W_2 = nn.Linear's default, b = 0, a = 0."""
        hq = self.n_head * self.head_dim
        with torch.no_grad():
            nn.init.eye_(self.wg[:hq])
            if self.n_states == 2:
                nn.init.kaiming_uniform_(self.wg[hq:], a=math.sqrt(5))
            self.bg.zero_()
            self.mix.zero_()

    # --- projections ----------------------------------------------------------------------------

    def _project(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        """x (..., n_embd) -> q (scaled), k, v, log g, each (..., n_states * n_head, d): the states
        stacked along the head axis (q, k, v repeated per state, k/v repeated per query group)."""
        H, kvh, d = self.n_head, self.n_kv_head, self.head_dim
        q = apply_rope(F.linear(x, self.wq).unflatten(-1, (H, d)), cos, sin) * self.scale
        kv = F.linear(x, self.wkv)
        k = apply_rope(kv[..., : kvh * d].unflatten(-1, (kvh, d)), cos, sin)
        v = kv[..., kvh * d :].unflatten(-1, (kvh, d))
        k, v = (t.repeat_interleave(self.group, dim=-2) for t in (k, v))  # (..., H, d)
        log_g = self.gates(x)
        return self._stack(q), self._stack(k), self._stack(v), log_g

    def gates(self, x: torch.Tensor) -> torch.Tensor:
        """log g of every state: x (..., n_embd) -> (..., n_states * n_head, d)."""
        z = F.linear(x, self.wg, self.bg)
        return gla.gate_log(z, self.temperature).unflatten(-1, (self.n_states * self.n_head, self.head_dim))

    def gate_similarity(self, x: torch.Tensor) -> torch.Tensor:
        """Mean cosine similarity of the two states' log-gates (decay rates) over tokens and heads, for
        the distillation's separation loss. On log g rather than g: at temperature 16 every g sits
        near 1, so any two gate vectors are nearly parallel and their cosine barely moves; the decay
        rates say which channels each state forgets, which is what should differ."""
        if self.n_states != 2:
            raise ValueError(f"gate separation needs two states, but this layer has n_states={self.n_states}")
        log_g = self.gates(x).unflatten(-2, (2, self.n_head))  # (..., 2, H, d)
        return F.cosine_similarity(log_g[..., 0, :, :], log_g[..., 1, :, :], dim=-1, eps=1e-12).mean()

    def _stack(self, t: torch.Tensor) -> torch.Tensor:
        """(..., H, d) -> (..., n_states * H, d), state-major."""
        if self.n_states == 1:
            return t
        return t.unsqueeze(-3).expand(*t.shape[:-2], self.n_states, *t.shape[-2:]).flatten(-3, -2)

    def _mix(self, o: torch.Tensor) -> torch.Tensor:
        """o (..., n_states * H, d) -> the mixture, flattened (..., H * d)."""
        o = o.unflatten(-2, (self.n_states, self.n_head))
        w = self.mix.softmax(0)
        return torch.einsum("...shd,s->...hd", o, w).flatten(-2)

    # --- the three forms ------------------------------------------------------------------------

    def forward_dense(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """Chunked parallel form over whole sequences (B, T, n_embd); backpropagates."""
        return self.forward_dense_from(x, cos, sin, None)[0]

    def forward_dense_from(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, past: dict[str, torch.Tensor] | None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The chunked form started from the prefix's final states (`past["S"]`: (B or 1, n_states *
        n_head, d, d)) instead of zeros."""
        q, k, v, log_g = self._project(x, cos, sin)
        S = None if past is None else past["S"].expand(x.shape[0], -1, -1, -1).contiguous()
        o, S = gla.chunked(q, k, v, log_g, state=S, chunk=self.chunk)
        return F.linear(self._mix(o), self.wo), {"S": S}

    def forward_naive(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The token-by-token recurrence (the reference): (output (B, T, n_embd), final states)."""
        q, k, v, log_g = self._project(x, cos, sin)
        o, S = gla.naive(q, k, v, log_g)
        return F.linear(self._mix(o), self.wo), S

    def forward_step(self, x: torch.Tensor, batch: AttentionBatch) -> torch.Tensor:
        """An engine step: decode rows through the recurrence (states batched), prefill chunks chunked."""
        q, k, v, log_g = self._project(x, batch.cos, batch.sin)  # (n, ns * H, d)
        out = torch.empty_like(q)
        nd = batch.num_decode
        if nd:
            states = [batch.state(j)["S"] for j in range(nd)]
            S = torch.stack(states)  # (nd, ns * H, d, d)
            out[:nd] = gla.step(q[:nd], k[:nd], v[:nd], log_g[:nd], S)
            for j, s in enumerate(states):
                s.copy_(S[j])
        for j, (row, length, _context) in enumerate(batch.segments[nd:], start=nd):
            st = batch.state(j)["S"]
            sl = slice(row, row + length)
            o, S = gla.chunked(q[None, sl], k[None, sl], v[None, sl], log_g[None, sl], st[None], self.chunk)
            st.copy_(S[0])
            out[sl] = o[0]
        return F.linear(self._mix(out), self.wo)

    # --- the cache ------------------------------------------------------------------------------

    def new_state(self) -> dict[str, torch.Tensor]:
        return {"S": torch.zeros(self.n_states * self.n_head, self.head_dim, self.head_dim)}

    def state_bytes(self) -> int:
        return self.n_states * self.n_head * self.head_dim * self.head_dim * 4

    def fold(self, k: torch.Tensor, v: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The state after T tokens from their cached k, v (T, n_kv_head, d; k after RoPE) and their
        layer inputs x (T, n_embd) (for the gates)."""
        with torch.no_grad():
            k, v = (t.float().repeat_interleave(self.group, dim=-2) for t in (k, v))
            S = gla.fold(self._stack(k)[None], self._stack(v)[None], self.gates(x.float())[None])
        return {"S": S[0].contiguous()}

    def convert_from(self, source: AttentionLayer, cache: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Fold a softmax layer's cache into this layer's state (the sequence keeps running, no recompute)."""
        if "k" not in cache:
            raise NotImplementedError(
                f"{type(self).__name__} folds a paged K/V cache, but the sequence's cache at this layer is a "
                f"{type(source).__name__} state"
            )
        if "side.x" not in cache:
            raise NotImplementedError(
                "folding K/V into the DSLA state needs each token's layer input for the gates, and this "
                "sequence did not keep it: set keep_inputs on the layer's slot before the sequence starts"
            )
        return self.fold(cache["k"], cache["v"], cache["side.x"])
