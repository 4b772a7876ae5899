"""What one engine step computes: `StepBatch` (all layers) and `AttentionBatch` (one layer, one kind).

An engine step runs every scheduled sequence's new tokens through the model at once,
flattened into N rows: rows [0, num_decode) are decode segments (one token each, so the
attention of all of them is one batched matmul), then prefill chunks, each contiguous.
The per-layer block tables and cache slots are computed once per step for every layer
(`slot_mapping`), so the per-layer cost in Python is a few indexing ops.

`AttentionBatch` is what an `AttentionLayer.forward_step` receives: the rows of the
sequences that use that layer's kind, their positions and RoPE tables, and accessors
for their cache at this layer (paged K/V, recurrent state, side tensors).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from tether.cloud.lm.cache import CacheManager, SequenceCache

__all__ = ["AttentionBatch", "StepBatch"]


@dataclass(eq=False)
class StepBatch:
    """The flattened tokens of one step and the cache geometry every layer shares.

    Built by `CacheManager.prepare_step` after the sequences' slots are allocated.
    Shapes: N rows, S sequences (the first `num_decode` decode one token), L layers.
    """

    cache: CacheManager
    seqs: list[SequenceCache]  # (S,)
    starts: list[int]  # first row of each sequence's segment
    lengths: list[int]  # new tokens of each sequence this step
    context: list[int]  # tokens of each sequence already cached before this step
    num_decode: int
    token_ids: torch.Tensor  # (N,) int64
    positions: torch.Tensor  # (N,) int64, absolute positions (= context + offset)
    row_seq: torch.Tensor  # (N,) int64, the sequence index of each row
    tables: torch.Tensor  # (S, L, nb) int64 KV block ids (0 where none: masked or unused)
    slot_mapping: torch.Tensor  # (L, N) int64 flat KV slot (block * block_size + offset) of each row
    logit_rows: torch.Tensor  # (S_out,) rows whose next-token logits are needed
    # layer -> (rows (n,), side slots (n,)): where the rows of sequences keeping side tensors at that layer go
    side_writes: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    cos: torch.Tensor | None = None  # (N, head_dim), set by the model
    sin: torch.Tensor | None = None
    uniform_kind: list[str | None] = field(default_factory=list)  # per layer: the one kind, or None if mixed
    _decode_geom: tuple[int, torch.Tensor | None] | None = field(default=None, repr=False)

    def decode_geometry(self) -> tuple[int, torch.Tensor | None]:
        """(blocks per decode sequence, padding mask) for all decode rows; computed once per step."""
        if self._decode_geom is None:
            lengths = [self.context[i] + 1 for i in range(self.num_decode)]
            self._decode_geom = _decode_geometry(lengths, self.cache.block_size)
        return self._decode_geom

    @property
    def num_rows(self) -> int:
        return int(self.token_ids.shape[0])

    def layer(self, layer: int, seq_idx: Sequence[int] | None = None) -> AttentionBatch:
        return AttentionBatch(self, layer, None if seq_idx is None else list(seq_idx))


def _decode_geometry(lengths: list[int], block_size: int) -> tuple[int, torch.Tensor | None]:
    """Blocks to gather per sequence, and the additive mask (1, S, 1, T): -inf past each length
    (None when every sequence fills the T = blocks * block_size positions exactly)."""
    nb = (max(lengths) + block_size - 1) // block_size
    total = nb * block_size
    if all(n == total for n in lengths):
        return nb, None
    pad = torch.arange(total)[None, :] >= torch.tensor(lengths)[:, None]
    return nb, torch.zeros(len(lengths), total).masked_fill_(pad, float("-inf")).view(
        1, len(lengths), 1, total
    )


class AttentionBatch:
    """The rows of one layer's attention for the sequences of one kind in this step.

    `seq_idx` None means every sequence of the step (the common, uniform case: no copies).
    All accessors return float32 tensors; K and V are post-RoPE, as the layer wrote them.
    """

    def __init__(self, step: StepBatch, layer: int, seq_idx: list[int] | None) -> None:
        self.step = step
        self.layer = layer
        self.seq_idx = seq_idx

    # --- geometry ---------------------------------------------------------------------------

    @cached_property
    def _segs(self) -> list[int]:
        return list(range(len(self.step.seqs))) if self.seq_idx is None else self.seq_idx

    @cached_property
    def rows(self) -> torch.Tensor | None:
        """Row indices into the step (None: all rows, in order)."""
        if self.seq_idx is None:
            return None
        st = self.step
        parts = [torch.arange(st.starts[i], st.starts[i] + st.lengths[i]) for i in self.seq_idx]
        return torch.cat(parts) if parts else torch.empty(0, dtype=torch.long)

    def _take(self, t: torch.Tensor) -> torch.Tensor:
        return t if self.rows is None else t.index_select(0, self.rows)

    @cached_property
    def positions(self) -> torch.Tensor:  # (n,)
        return self._take(self.step.positions)

    @cached_property
    def cos(self) -> torch.Tensor:  # (n, head_dim)
        return self._take(self.step.cos)

    @cached_property
    def sin(self) -> torch.Tensor:
        return self._take(self.step.sin)

    @property
    def seqs(self) -> list[SequenceCache]:
        return [self.step.seqs[i] for i in self._segs]

    @cached_property
    def num_decode(self) -> int:
        """The first `num_decode` sequences (and rows) decode one token each."""
        return sum(1 for i in self._segs if i < self.step.num_decode)

    @cached_property
    def segments(self) -> list[tuple[int, int, int]]:
        """(first row in this batch's rows, new tokens, tokens cached before) per sequence."""
        out, row = [], 0
        for i in self._segs:
            n = self.step.lengths[i]
            out.append((row, n, self.step.context[i]))
            row += n
        return out

    # --- paged K/V -----------------------------------------------------------------------------

    def write_kv(self, k: torch.Tensor, v: torch.Tensor) -> None:
        """Store this step's k, v (n, n_kv_head, head_dim) in the sequences' blocks of this layer."""
        slots = self._take(self.step.slot_mapping[self.layer])
        kv = self.step.cache.kv_flat  # (2, n_kv_head, num_blocks * block_size, head_dim)
        kv[0].index_copy_(1, slots, k.transpose(0, 1))
        kv[1].index_copy_(1, slots, v.transpose(0, 1))

    def decode_kv(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """K, V of the decode sequences, padded: (n_kv_head, num_decode, T, head_dim) each, and an
        additive mask (1, num_decode, 1, T) with -inf past each sequence's length (None: no padding).
        Call after `write_kv` so the current token is included."""
        st, nd = self.step, self.num_decode
        if self.seq_idx is None:
            nb, mask = st.decode_geometry()
            tables = st.tables[:nd, self.layer, :nb]
        else:
            dec = self._segs[:nd]
            nb, mask = _decode_geometry([st.context[i] + 1 for i in dec], st.cache.block_size)
            tables = st.tables[: st.num_decode, self.layer, :nb].index_select(0, torch.tensor(dec))
        k, v = st.cache.gather_kv(tables.reshape(-1), scratch=True)  # (n_kv_head, nd * nb * bs, hd)
        kvh, hd = k.shape[0], k.shape[-1]
        total = nb * st.cache.block_size
        return k.view(kvh, nd, total, hd), v.view(kvh, nd, total, hd), mask

    def context_kv(self, j: int) -> tuple[torch.Tensor, torch.Tensor]:
        """K, V of sequence j of this batch over all its tokens so far, this step's included:
        (n_kv_head, context + new, head_dim) each. Call after `write_kv`."""
        i = self._segs[j]
        st = self.step
        total = st.context[i] + st.lengths[i]
        bs = st.cache.block_size
        nb = (total + bs - 1) // bs
        k, v = st.cache.gather_kv(st.tables[i, self.layer, :nb])
        return k[:, :total], v[:, :total]

    # --- recurrent state ---------------------------------------------------------------------

    def state(self, j: int) -> dict[str, torch.Tensor]:
        """The recurrent state of sequence j at this layer (STATE kinds); update it in place or via `set_state`."""
        return self.seqs[j].states[self.layer]

    def set_state(self, j: int, state: dict[str, torch.Tensor]) -> None:
        self.seqs[j].states[self.layer] = state

    # --- side tensors ----------------------------------------------------------------------------

    def keeps_side(self, j: int) -> bool:
        """Whether sequence j keeps side tensors at this layer (then the slot writes them; see cache)."""
        return self.layer in self.seqs[j].side_layers

    def side(self, j: int) -> torch.Tensor:
        """The side tensor rows of sequence j at this layer over all its tokens so far: (tokens, width)."""
        i = self._segs[j]
        st = self.step
        total = st.context[i] + st.lengths[i]
        return st.cache.read_side(st.seqs[i], self.layer, total)
