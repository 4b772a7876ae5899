"""The per-sequence, per-layer cache of an engine: allocate, append, convert, export, import, free.

Each sequence has, per layer, the cache its attention kind needs (`CacheKind`): paged K/V
blocks from the engine's pool, a recurrent state (tensors the kind defines), and side
tensors when the layer keeps its inputs ("x", for folding K/V into a state later). The
kinds are fixed when a sequence starts (from each slot's `active` kind) and change only
through `convert_layer` (the conversion hook). Full blocks are shared by prompt prefix
(block_pool.PrefixCache) unless `CacheConfig.prefix_caching` is off. Every path out of a
sequence (finished, cancelled, errored, preempted) ends in `free`, which returns every
block: `CacheManager.usage()` shows no block in use once nothing runs.

Not thread-safe: only the engine thread calls it, between and within steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from tether.cloud.lm.attention import AttentionSlot, CacheKind
from tether.cloud.lm.batch import StepBatch
from tether.cloud.lm.block_pool import BlockPool, OutOfBlocks, PrefixCache, block_hash
from tether.cloud.lm.config import CacheConfig, ModelConfig

__all__ = ["CacheExport", "CacheManager", "CacheUsage", "OutOfBlocks", "SequenceCache"]


@dataclass
class CacheExport:
    """A sequence's cache as plain tensors: what Symphony migrates, what `import_sequence` restores.

    `layers[l]`: {"k", "v": (T, n_kv_head, head_dim), K after RoPE} for a PAGED_KV layer, the
    state tensors for a STATE layer, plus {"side.x": (T, n_embd)} where inputs were kept.
    `token_ids` are the T tokens the cache covers (positions 0 .. T-1).
    """

    token_ids: list[int]
    kinds: list[str]
    layers: list[dict[str, torch.Tensor]]

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for layer in self.layers for t in layer.values())

    def to_tensors(self) -> dict[str, torch.Tensor]:
        """Flat {name: tensor} (safetensors, torch.save, Ray objects); `from_tensors` reverses it."""
        out = {"token_ids": torch.tensor(self.token_ids, dtype=torch.int64)}
        for i, (kind, layer) in enumerate(zip(self.kinds, self.layers, strict=True)):
            out[f"kind.{i}.{kind}"] = torch.empty(0)
            for name, t in layer.items():
                out[f"layer.{i}.{name}"] = t.contiguous()
        return out

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> CacheExport:
        kinds = dict(name.split(".", 2)[1:] for name in tensors if name.startswith("kind."))
        n = len(kinds)
        layers: list[dict[str, torch.Tensor]] = [{} for _ in range(n)]
        for name, t in tensors.items():
            if name.startswith("layer."):
                _, i, key = name.split(".", 2)
                layers[int(i)][key] = t
        return cls(tensors["token_ids"].tolist(), [kinds[str(i)] for i in range(n)], layers)


@dataclass
class CacheUsage:
    kv_blocks_total: int
    kv_blocks_used: int  # held by running sequences (private or through prefix entries they use)
    kv_blocks_cached: int  # held by idle prefix entries: free in effect
    kv_bytes_used: int
    side_blocks_used: int
    state_bytes: int
    prefix_hit_tokens: int
    prefix_query_tokens: int


class SequenceCache:
    """One sequence's cache across layers. Block index j covers tokens [j*bs, (j+1)*bs)."""

    def __init__(
        self, seq_id: int, kinds: list[str], cache_kinds: list[CacheKind], side_layers, capacity: int
    ):
        self.seq_id = seq_id
        self.kinds = kinds  # per layer: attention kind name
        self.cache_kinds = cache_kinds
        self.side_layers = frozenset(side_layers)
        self.num_tokens = 0  # tokens whose cache is written
        L = len(kinds)
        self.kv_blocks: list[list[int]] = [[] for _ in range(L)]
        self.table = torch.zeros(L, capacity, dtype=torch.int64)  # mirror of kv_blocks (0 = none)
        self.side_blocks: dict[int, list[int]] = {layer: [] for layer in self.side_layers}
        self.states: dict[int, dict[str, torch.Tensor]] = {}
        self.entry_keys: list[int | None] = []  # per block index: the prefix entry owning it, or private
        self.block_keys: list[int] = []  # chained hash of each full block computed so far
        self.num_blocks = 0  # block indices allocated

    @property
    def all_kv(self) -> bool:
        return all(k is CacheKind.PAGED_KV for k in self.cache_kinds)


class CacheManager:
    """Owns the KV and side pools and every running sequence's cache."""

    def __init__(
        self, model: ModelConfig, cfg: CacheConfig, slots: Sequence[AttentionSlot], max_context: int
    ):
        self.model = model
        self.cfg = cfg
        self.slots = list(slots)
        self.block_size = bs = cfg.block_size
        self.capacity = (max_context + bs - 1) // bs  # block indices per sequence
        kv_block_bytes = model.kv_bytes_per_token_per_layer * bs
        num_kv = max(cfg.kv_cache_bytes // kv_block_bytes, 1)
        # torch.empty: pages are touched only when written, so an unused pool costs no memory.
        self.kv_pool = BlockPool("kv", (2, model.n_kv_head, num_kv, bs, model.head_dim), block_axis=2)
        self.kv_flat = self.kv_pool.tensor.view(2, model.n_kv_head, num_kv * bs, model.head_dim)
        # One row per (K or V, kv head, block): a gather copies whole 4 KiB rows.
        self._kv_rows = self.kv_pool.tensor.view(2 * model.n_kv_head * num_kv, bs * model.head_dim)
        self._row_base = torch.arange(2 * model.n_kv_head, dtype=torch.int64)[:, None] * num_kv
        self._scratch = torch.empty(0)  # decode's gathered K/V, reused (see gather_kv)
        side_block_bytes = model.n_embd * 4 * bs
        num_side = max(cfg.side_cache_bytes // side_block_bytes, 1)
        self.side_pool = BlockPool("side", (num_side, bs, model.n_embd), block_axis=0)
        self.side_flat = self.side_pool.tensor.view(num_side * bs, model.n_embd)
        self.prefix = PrefixCache({"kv": self.kv_pool, "side": self.side_pool})
        self.seqs: dict[int, SequenceCache] = {}
        self.prefix_hit_tokens = 0
        self.prefix_query_tokens = 0

    # --- starting and ending sequences -------------------------------------------------------

    def new_sequence(
        self, seq_id: int, token_ids: Sequence[int], kinds: Sequence[str] | None = None
    ) -> SequenceCache:
        """Start a sequence with each layer's active kind (or `kinds`); reuse cached prefix blocks.

        Returns the cache with `num_tokens` = the prefix reused (0 when none)."""
        kinds = [s.active for s in self.slots] if kinds is None else list(kinds)
        impls = [slot.impl(k) for slot, k in zip(self.slots, kinds, strict=True)]
        side = [s.layer for s in self.slots if s.keep_inputs and kinds[s.layer] == "softmax"]
        seq = SequenceCache(seq_id, kinds, [i.cache_kind for i in impls], side, self.capacity)
        for layer, impl in enumerate(impls):
            if impl.cache_kind is CacheKind.STATE:
                seq.states[layer] = impl.new_state()
        self.seqs[seq_id] = seq
        if self.cfg.prefix_caching and seq.all_kv:
            self._reuse_prefix(seq, token_ids)
        return seq

    def _reuse_prefix(self, seq: SequenceCache, token_ids: Sequence[int]) -> None:
        bs = self.block_size
        # At least one prompt token must be computed: its logits give the first output token.
        full = (len(token_ids) - 1) // bs
        self.prefix_query_tokens += full * bs
        parent = None
        for j in range(full):
            key = block_hash(parent, token_ids[j * bs : (j + 1) * bs])
            entry = self.prefix.lookup(key)
            if entry is None or not self._covers(seq, entry.blocks):
                break
            self.prefix.acquire(entry)
            for layer in range(len(seq.kinds)):
                block = entry.blocks[("kv", layer)]
                seq.kv_blocks[layer].append(block)
                seq.table[layer, j] = block
            for layer in seq.side_layers:
                seq.side_blocks[layer].append(entry.blocks[("side", layer)])
            seq.entry_keys.append(key)
            seq.block_keys.append(key)
            seq.num_blocks = j + 1
            parent = key
        seq.num_tokens = seq.num_blocks * bs
        self.prefix_hit_tokens += seq.num_tokens

    @staticmethod
    def _covers(seq: SequenceCache, blocks: dict[tuple[str, int], int]) -> bool:
        return all(("kv", layer) in blocks for layer in range(len(seq.kinds))) and all(
            ("side", layer) in blocks for layer in seq.side_layers
        )

    def free(self, seq_id: int) -> None:
        """Return every block of the sequence (idempotent: a second call does nothing)."""
        seq = self.seqs.pop(seq_id, None)
        if seq is None:
            return
        for j in range(seq.num_blocks):
            key = seq.entry_keys[j] if j < len(seq.entry_keys) else None
            if key is not None:
                self.prefix.release(key)
                continue
            for blocks in seq.kv_blocks:
                if j < len(blocks):
                    self.kv_pool.free([blocks[j]])
            for blocks in seq.side_blocks.values():
                if j < len(blocks):
                    self.side_pool.free([blocks[j]])
        seq.states.clear()

    # --- growing -----------------------------------------------------------------------------

    def blocks_needed(self, seq: SequenceCache, new_tokens: int) -> tuple[int, int]:
        """(KV blocks, side blocks) to allocate before `new_tokens` more tokens can be cached."""
        want = (seq.num_tokens + new_tokens + self.block_size - 1) // self.block_size
        extra = max(want - seq.num_blocks, 0)
        kv_layers = sum(1 for k in seq.cache_kinds if k is CacheKind.PAGED_KV)
        return extra * kv_layers, extra * len(seq.side_layers)

    def free_blocks(self) -> tuple[int, int]:
        """Blocks available (free or held only by idle prefix entries): (KV, side)."""
        return (
            self.kv_pool.num_free + self.prefix.idle_blocks("kv"),
            self.side_pool.num_free + self.prefix.idle_blocks("side"),
        )

    def can_append(self, seq: SequenceCache, new_tokens: int, reserved: tuple[int, int] = (0, 0)) -> bool:
        kv, side = self.blocks_needed(seq, new_tokens)
        free_kv, free_side = self.free_blocks()
        return kv + reserved[0] <= free_kv and side + reserved[1] <= free_side

    def append_slots(self, seq: SequenceCache, new_tokens: int) -> None:
        """Allocate the blocks that tokens num_tokens .. num_tokens + new_tokens - 1 need."""
        if seq.num_tokens + new_tokens > self.capacity * self.block_size:
            raise OutOfBlocks(
                f"sequence {seq.seq_id}: {seq.num_tokens + new_tokens} tokens exceed the context "
                f"({self.capacity * self.block_size})"
            )
        kv, side = self.blocks_needed(seq, new_tokens)
        if kv > self.kv_pool.num_free:
            self.prefix.evict("kv", kv)
        if side > self.side_pool.num_free:
            self.prefix.evict("side", side)
        if kv > self.kv_pool.num_free or side > self.side_pool.num_free:
            raise OutOfBlocks(f"sequence {seq.seq_id}: needs {kv} KV and {side} side blocks")
        want = (seq.num_tokens + new_tokens + self.block_size - 1) // self.block_size
        for j in range(seq.num_blocks, want):
            for layer, kind in enumerate(seq.cache_kinds):
                if kind is CacheKind.PAGED_KV:
                    (block,) = self.kv_pool.allocate(1)
                    seq.kv_blocks[layer].append(block)
                    seq.table[layer, j] = block
            for layer in seq.side_layers:
                seq.side_blocks[layer].extend(self.side_pool.allocate(1))
            seq.entry_keys.append(None)
        seq.num_blocks = max(seq.num_blocks, want)

    def commit(self, seq: SequenceCache, new_tokens: int, token_ids: Sequence[int]) -> None:
        """After a step wrote `new_tokens` more tokens: count them; offer newly full blocks to the prefix cache."""
        seq.num_tokens += new_tokens
        bs = self.block_size
        while len(seq.block_keys) < seq.num_tokens // bs:
            j = len(seq.block_keys)
            parent = seq.block_keys[-1] if seq.block_keys else None
            key = block_hash(parent, token_ids[j * bs : (j + 1) * bs])
            seq.block_keys.append(key)
            if (
                self.cfg.prefix_caching
                and seq.all_kv
                and seq.entry_keys[j] is None
                and self.prefix.lookup(key) is None
            ):
                blocks = {("kv", layer): seq.kv_blocks[layer][j] for layer in range(len(seq.kinds))}
                blocks.update({("side", layer): seq.side_blocks[layer][j] for layer in seq.side_layers})
                self.prefix.register(key, parent, blocks, (j + 1) * bs)
                seq.entry_keys[j] = key

    # --- a step --------------------------------------------------------------------------------

    def prepare_step(
        self,
        seqs: Sequence[SequenceCache],
        token_ids: Sequence[Sequence[int]],
        num_decode: int,
        sample: Sequence[bool] | None = None,
    ) -> StepBatch:
        """The step's geometry for `seqs` (decode ones first) writing `token_ids[i]` after their
        cached tokens; blocks must already be allocated (`append_slots`). `sample[i]`: whether
        sequence i needs next-token logits (a prefill chunk short of the prompt's end does not)."""
        bs = self.block_size
        lengths = [len(t) for t in token_ids]
        context = [s.num_tokens for s in seqs]
        starts, row = [], 0
        for n in lengths:
            starts.append(row)
            row += n
        flat = [t for toks in token_ids for t in toks]
        positions = torch.cat([torch.arange(c, c + n) for c, n in zip(context, lengths, strict=True)])
        row_seq = torch.repeat_interleave(torch.arange(len(seqs)), torch.tensor(lengths))
        nb = max((c + n + bs - 1) // bs for c, n in zip(context, lengths, strict=True))
        tables = torch.stack([s.table[:, :nb] for s in seqs])  # (S, L, nb)
        block_of_row = positions // bs
        slot_mapping = (tables[row_seq, :, block_of_row] * bs + (positions % bs)[:, None]).T.contiguous()
        ends = [
            st + n - 1
            for st, n, want in zip(starts, lengths, sample or [True] * len(seqs), strict=True)
            if want
        ]
        kinds0 = seqs[0].kinds
        uniform = [
            kinds0[layer] if all(s.kinds[layer] == kinds0[layer] for s in seqs) else None
            for layer in range(len(kinds0))
        ]
        step = StepBatch(
            cache=self,
            seqs=list(seqs),
            starts=starts,
            lengths=lengths,
            context=context,
            num_decode=num_decode,
            token_ids=torch.tensor(flat, dtype=torch.int64),
            positions=positions,
            row_seq=row_seq,
            tables=tables,
            slot_mapping=slot_mapping,
            logit_rows=torch.tensor(ends, dtype=torch.int64),
            uniform_kind=uniform,
        )
        if any(s.side_layers for s in seqs):
            step.side_writes = self._side_writes(seqs, starts, lengths, context)
        return step

    def _side_writes(self, seqs, starts, lengths, context) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        bs = self.block_size
        out: dict[int, tuple[list[int], list[int]]] = {}
        for s, start, n, c in zip(seqs, starts, lengths, context, strict=True):
            for layer in s.side_layers:
                rows, slots = out.setdefault(layer, ([], []))
                blocks = s.side_blocks[layer]
                for i in range(n):
                    p = c + i
                    rows.append(start + i)
                    slots.append(blocks[p // bs] * bs + p % bs)
        return {layer: (torch.tensor(r), torch.tensor(sl)) for layer, (r, sl) in out.items()}

    def gather_kv(self, blocks: torch.Tensor, scratch: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """K, V of `blocks` (nb,) concatenated: (n_kv_head, nb * block_size, head_dim) each.

        `scratch`: into a buffer reused by every call, valid until the next scratch gather (decode
        consumes each layer's K/V before the next layer's). At long context the gathered K/V of a
        batch is hundreds of MB; a fresh allocation that large is mapped anew by malloc and faulted
        in page by page, which cost more than the copy itself."""
        kvh, bs, hd = self.model.n_kv_head, self.block_size, self.model.head_dim
        rows = (self._row_base + blocks[None, :]).reshape(-1)
        if scratch:
            n = rows.numel() * bs * hd
            if self._scratch.numel() < n:
                self._scratch = torch.empty(n)
            kv = torch.index_select(self._kv_rows, 0, rows, out=self._scratch[:n].view(rows.numel(), bs * hd))
        else:
            kv = self._kv_rows.index_select(0, rows)
        kv = kv.view(2, kvh, blocks.numel() * bs, hd)
        return kv[0], kv[1]

    def write_side(self, slots: torch.Tensor, rows: torch.Tensor) -> None:
        self.side_flat.index_copy_(0, slots, rows)

    def read_side(self, seq: SequenceCache, layer: int, num_tokens: int) -> torch.Tensor:
        blocks = torch.tensor(seq.side_blocks[layer], dtype=torch.int64)
        return self.side_pool.tensor.index_select(0, blocks).flatten(0, 1)[:num_tokens]

    # --- conversion, export, import --------------------------------------------------------------

    def layer_cache(self, seq: SequenceCache, layer: int) -> dict[str, torch.Tensor]:
        """Sequence `seq`'s cache at `layer` in export form (see `CacheExport`)."""
        T = seq.num_tokens
        out: dict[str, torch.Tensor] = {}
        if seq.cache_kinds[layer] is CacheKind.PAGED_KV:
            nb = (T + self.block_size - 1) // self.block_size
            k, v = self.gather_kv(torch.tensor(seq.kv_blocks[layer][:nb], dtype=torch.int64))
            out["k"] = k[:, :T].transpose(0, 1).contiguous()
            out["v"] = v[:, :T].transpose(0, 1).contiguous()
        else:
            out.update({name: t.clone() for name, t in seq.states[layer].items()})
        if layer in seq.side_layers:
            out["side.x"] = self.read_side(seq, layer, T).clone()
        return out

    def convert_layer(self, seq: SequenceCache, layer: int, kind: str) -> None:
        """The conversion hook: move `seq` at `layer` to attention kind `kind` (between steps).

        The target's `convert_from` builds its cache from the current one; then the old
        blocks of this layer go back to the pool (blocks shared through the prefix cache
        stay with their entry). Raises NotImplementedError when the target cannot convert."""
        slot = self.slots[layer]
        source, target = slot.impl(seq.kinds[layer]), slot.impl(kind)
        if seq.kinds[layer] == kind:
            return
        new_cache = target.convert_from(source, self.layer_cache(seq, layer))
        if target.cache_kind is not CacheKind.STATE:
            raise NotImplementedError(
                f"layer {layer}: conversion to a {target.cache_kind.value} kind is not supported"
            )
        for pool, blocks in (
            (self.kv_pool, seq.kv_blocks[layer]),
            (self.side_pool, seq.side_blocks.get(layer, [])),
        ):
            for j, block in enumerate(blocks):
                key = seq.entry_keys[j]
                if key is None:
                    pool.free([block])
                    continue
                # A shared prefix block stays with its entry, unless this sequence is the entry's only user:
                # then the entry gives up this layer (later lookups miss there) and the memory comes back.
                entry = self.prefix.entries[key]
                if entry.refs == 1:
                    del entry.blocks[(pool.name, layer)]
                    pool.free([block])
        seq.kv_blocks[layer] = []
        seq.table[layer].zero_()
        if layer in seq.side_layers:
            del seq.side_blocks[layer]
            seq.side_layers = seq.side_layers - {layer}
        seq.kinds[layer] = kind
        seq.cache_kinds[layer] = target.cache_kind
        seq.states[layer] = new_cache

    def export_sequence(self, seq: SequenceCache, token_ids: Sequence[int]) -> CacheExport:
        """The cache of `seq` as tensors; `token_ids` are its tokens (at least num_tokens of them)."""
        layers = [self.layer_cache(seq, layer) for layer in range(len(seq.kinds))]
        return CacheExport(list(token_ids[: seq.num_tokens]), list(seq.kinds), layers)

    def import_sequence(self, seq_id: int, export: CacheExport) -> SequenceCache:
        """A new sequence whose cache is `export` (kinds included); raises OutOfBlocks when it does not fit."""
        if len(export.kinds) != len(self.slots):
            raise ValueError(
                f"a cache export must have one entry per layer ({len(self.slots)}), but has {len(export.kinds)}"
            )
        impls = [slot.impl(k) for slot, k in zip(self.slots, export.kinds, strict=True)]
        side = [i for i, layer in enumerate(export.layers) if "side.x" in layer]
        seq = SequenceCache(seq_id, list(export.kinds), [i.cache_kind for i in impls], side, self.capacity)
        self.seqs[seq_id] = seq
        T = export.num_tokens
        try:
            self.append_slots(seq, T)
        except OutOfBlocks:
            self.free(seq_id)
            raise
        bs = self.block_size
        pos = torch.arange(T)
        for layer, data in enumerate(export.layers):
            if seq.cache_kinds[layer] is CacheKind.PAGED_KV:
                slots = seq.table[layer, pos // bs] * bs + pos % bs
                self.kv_flat[0].index_copy_(1, slots, data["k"].transpose(0, 1).float())
                self.kv_flat[1].index_copy_(1, slots, data["v"].transpose(0, 1).float())
            else:
                seq.states[layer] = {k: t.clone() for k, t in data.items() if not k.startswith("side.")}
            if layer in seq.side_layers:
                blocks = torch.tensor(seq.side_blocks[layer], dtype=torch.int64)
                slots = blocks[pos // bs] * bs + pos % bs
                self.side_flat.index_copy_(0, slots, data["side.x"].float())
        self.commit(seq, T, export.token_ids)
        return seq

    def usage(self) -> CacheUsage:
        free_kv = self.kv_pool.num_free
        idle_kv = self.prefix.idle_blocks("kv")
        used = self.kv_pool.num_blocks - free_kv - idle_kv
        state_bytes = sum(
            t.numel() * t.element_size()
            for s in self.seqs.values()
            for st in s.states.values()
            for t in st.values()
        )
        return CacheUsage(
            kv_blocks_total=self.kv_pool.num_blocks,
            kv_blocks_used=used,
            kv_blocks_cached=idle_kv,
            kv_bytes_used=used * self.kv_pool.block_bytes,
            side_blocks_used=self.side_pool.num_blocks
            - self.side_pool.num_free
            - self.prefix.idle_blocks("side"),
            state_bytes=state_bytes,
            prefix_hit_tokens=self.prefix_hit_tokens,
            prefix_query_tokens=self.prefix_query_tokens,
        )
