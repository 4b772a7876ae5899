"""Fixed-size cache blocks in one preallocated tensor, and the prefix cache that shares full blocks.

A `BlockPool` is one tensor cut into `num_blocks` blocks of `block_size` tokens; a block
holds those tokens for ONE layer, so a layer that changes kind for a sequence gives its
blocks back on its own (vLLM's PagedAttention, with per-layer block tables). The KV pool
of an engine has shape (2, n_kv_head, num_blocks, block_size, head_dim): K and V of a
block set are contiguous per head, so gathering a sequence's blocks yields
(n_kv_head, tokens, head_dim) without a transpose. Memory is accounted in bytes.

`PrefixCache` keys each full block of tokens by a hash chained over the blocks before it
(vLLM's automatic prefix caching, SGLang's radix reuse at block granularity). An entry owns
the blocks of every layer for that token block; sequences that hit it hold references; an
entry nobody references stays cached, counted as free, and is evicted least recently used
when a pool runs short.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

__all__ = ["BlockPool", "OutOfBlocks", "PrefixCache", "PrefixEntry", "block_hash"]


class OutOfBlocks(RuntimeError):
    """A pool has too few free blocks; recoverable: the scheduler preempts or waits."""


class BlockPool:
    """`num_blocks` blocks of shape `block_shape` (token axis included) in one tensor.

    Not thread-safe: the engine thread is its only user. `allocate` takes from the free list;
    `free` returns blocks to it; a block is in exactly one place: the free list, a sequence's
    private blocks, or a prefix entry.
    """

    def __init__(self, name: str, shape: Sequence[int], block_axis: int, dtype: torch.dtype = torch.float32):
        self.name = name
        # numpy's zeros is calloc: the kernel hands out zero pages as they are first touched, so an
        # unused pool costs no memory, and never-written slots hold 0.0, never NaN (masked positions
        # are multiplied by zero weights: garbage there would poison the sum).
        self.tensor = torch.from_numpy(np.zeros(tuple(shape), dtype=np.float32)).to(dtype)
        self.block_axis = block_axis
        self.num_blocks = self.tensor.shape[block_axis]
        self.block_bytes = self.tensor.numel() * self.tensor.element_size() // max(self.num_blocks, 1)
        # LIFO free list: recently freed blocks are warm in cache.
        self._free: list[int] = list(range(self.num_blocks - 1, -1, -1))

    @property
    def num_free(self) -> int:
        return len(self._free)

    @property
    def total_bytes(self) -> int:
        return self.block_bytes * self.num_blocks

    def allocate(self, n: int) -> list[int]:
        if n > len(self._free):
            raise OutOfBlocks(f"pool {self.name!r}: asked for {n} blocks, {len(self._free)} free")
        out = self._free[-n:] if n else []
        del self._free[len(self._free) - n :]
        return out[::-1]

    def free(self, blocks: Sequence[int]) -> None:
        self._free.extend(blocks)


def block_hash(parent: int | None, tokens: Sequence[int]) -> int:
    """The key of a full block: its tokens and, through `parent`, every token before it."""
    return hash((parent, tuple(tokens)))


@dataclass
class PrefixEntry:
    """The cached blocks of one token block: {(pool name, layer): block id}, and its users."""

    key: int
    blocks: dict[tuple[str, int], int]
    refs: int = 0
    num_tokens: int = 0  # tokens up to and including this block (prefix length)
    children: int = field(default=0, repr=False)  # entries chained on this one (evict leaves first)


class PrefixCache:
    """Full blocks shared by prompt prefix. `pools` maps pool name to pool, for eviction."""

    def __init__(self, pools: dict[str, BlockPool]) -> None:
        self.pools = pools
        self.entries: dict[int, PrefixEntry] = {}
        self._idle: OrderedDict[int, PrefixEntry] = OrderedDict()  # refs == 0, least recently used first
        self._parent: dict[int, int | None] = {}
        self._idle_blocks: dict[str, int] = dict.fromkeys(pools, 0)

    def idle_blocks(self, pool: str) -> int:
        """Blocks of `pool` held by entries nobody uses: free in effect (evicted on demand)."""
        return self._idle_blocks[pool]

    def _count_idle(self, entry: PrefixEntry, sign: int) -> None:
        for pool, _layer in entry.blocks:
            self._idle_blocks[pool] += sign

    def lookup(self, key: int) -> PrefixEntry | None:
        return self.entries.get(key)

    def acquire(self, entry: PrefixEntry) -> None:
        if entry.refs == 0:
            del self._idle[entry.key]
            self._count_idle(entry, -1)
        entry.refs += 1

    def release(self, key: int) -> None:
        entry = self.entries[key]
        entry.refs -= 1
        if entry.refs == 0:
            self._idle[key] = entry  # most recently used at the end
            self._count_idle(entry, +1)

    def register(
        self, key: int, parent: int | None, blocks: dict[tuple[str, int], int], num_tokens: int
    ) -> None:
        """Hand `blocks` to a new entry `key` referenced once (by the sequence that computed them)."""
        entry = PrefixEntry(key, dict(blocks), refs=1, num_tokens=num_tokens)
        self.entries[key] = entry
        self._parent[key] = parent
        if parent is not None and parent in self.entries:
            self.entries[parent].children += 1

    def evict(self, pool: str, needed: int) -> None:
        """Free idle entries, least recently used first, until `pool` has `needed` free blocks."""
        target = self.pools[pool]
        while target.num_free < needed and self._idle:
            victim = next((e for e in self._idle.values() if e.children == 0), None)
            if victim is None:  # only parents left idle: their children are in use
                break
            self._drop(victim)

    def clear(self) -> None:
        """Drop every idle entry (tests, and switching prefix caching off)."""
        while True:
            victim = next((e for e in self._idle.values() if e.children == 0), None)
            if victim is None:
                return
            self._drop(victim)

    def _drop(self, entry: PrefixEntry) -> None:
        del self._idle[entry.key]
        self._count_idle(entry, -1)
        del self.entries[entry.key]
        parent = self._parent.pop(entry.key, None)
        if parent is not None and parent in self.entries:
            self.entries[parent].children -= 1
        for (pool, _layer), block in entry.blocks.items():
            self.pools[pool].free([block])
