"""The collectives graph-parallel serving needs, over torch.distributed (gloo on CPU), and their
one-process stand-in (OMEGA, arXiv 2501.08547, section 5: computation graph parallelism).

Every method is collective: all ranks call it, in the same order, with tensors of the agreed
shapes (SPMD). Rows are exchanged by owner: a tensor whose rows are grouped by owning rank,
`counts[q]` rows for rank q, sends each group to its owner.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["Comm", "GlooComm", "LocalComm"]


class Comm:
    """One process: every collective is the identity. Base of the multi-process version."""

    rank = 0
    world_size = 1

    def to_owners(self, rows: Tensor, counts: list[int]) -> list[Tensor]:
        """Send rows (sum(counts), W), grouped by owner, to their owners; returns the P blocks
        (counts[rank], W) this rank received, one per sender, in rank order."""
        return [rows]

    def from_owners(self, rows: Tensor, counts: list[int]) -> Tensor:
        """Each rank gives its own counts[rank] rows; every rank gets all sum(counts) rows, grouped by owner."""
        return rows

    def concat(self, ids: Tensor) -> Tensor:
        """Every rank's 1-D tensor, concatenated in rank order, on every rank."""
        return ids

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's object on every rank."""
        return obj

    def gather(self, obj: Any) -> list[Any] | None:
        """Every rank's object, in rank order, on rank 0 (None elsewhere)."""
        return [obj]


LocalComm = Comm


class GlooComm(Comm):
    """torch.distributed collectives; the process group must be initialised (gloo on CPU)."""

    def __init__(self) -> None:
        if not dist.is_initialized():
            raise RuntimeError("GlooComm needs torch.distributed.init_process_group(backend='gloo') first")
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()

    def to_owners(self, rows: Tensor, counts: list[int]) -> list[Tensor]:
        width = rows.shape[1]
        mine = counts[self.rank]
        out = torch.empty(mine * self.world_size, width, dtype=rows.dtype)
        dist.all_to_all_single(
            out, rows.contiguous(), output_split_sizes=[mine] * self.world_size, input_split_sizes=counts
        )
        return list(out.split(mine)) if mine else [out[:0]] * self.world_size

    def from_owners(self, rows: Tensor, counts: list[int]) -> Tensor:
        width = rows.shape[1]
        out = torch.empty(sum(counts), width, dtype=rows.dtype)
        send = rows.contiguous().repeat(self.world_size, 1)  # my block to every rank
        dist.all_to_all_single(
            out, send, output_split_sizes=counts, input_split_sizes=[counts[self.rank]] * self.world_size
        )
        return out

    def concat(self, ids: Tensor) -> Tensor:
        size = torch.tensor([ids.numel()], dtype=torch.long)
        sizes = [torch.zeros(1, dtype=torch.long) for _ in range(self.world_size)]
        dist.all_gather(sizes, size)
        longest = int(max(int(s) for s in sizes))
        padded = torch.zeros(longest, dtype=ids.dtype)
        padded[: ids.numel()] = ids
        blocks = [torch.zeros(longest, dtype=ids.dtype) for _ in range(self.world_size)]
        dist.all_gather(blocks, padded)
        return torch.cat([b[: int(s)] for b, s in zip(blocks, sizes, strict=True)])

    def broadcast(self, obj: Any) -> Any:
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj: Any) -> list[Any] | None:
        box: list[Any] | None = [None] * self.world_size if self.rank == 0 else None
        dist.gather_object(obj, box, dst=0)
        return box
