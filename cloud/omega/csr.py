"""The CSR index every serving method extracts its subgraphs from, a request's edges laid over it, and a
vectorised uniform neighbour sampler (OMEGA, arXiv 2501.08547; sampling as GraphSAGE, Hamilton et al. 2017).

All look-ups are whole-tensor operations over the rows asked for: cost is proportional to the
edges returned, never to the graph (filtering an edge list with `isin` costs more than the GNN).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["CSR", "Adjacency", "concat_rows", "exclusive_cumsum", "sparse_rows"]


def sparse_rows(rowptr: Tensor, col: Tensor, values: Tensor, size: tuple[int, int]) -> Tensor:
    """A torch sparse CSR matrix; indices are built here, so the invariant checks are skipped."""
    with warnings.catch_warnings():
        # torch calls CSR tensors "beta"; the ops used here (mm with sum/max reduce) are stable
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
        return torch.sparse_csr_tensor(rowptr, col, values, size=size, check_invariants=False)


def exclusive_cumsum(counts: Tensor) -> Tensor:
    """(n,) -> (n,): out[i] = counts[:i].sum()."""
    out = torch.cumsum(counts, 0)
    return out - counts


def _segment_arange(counts: Tensor, total: int) -> Tensor:
    """For segments of the given lengths laid end to end, each entry's position inside its segment."""
    return torch.arange(total, dtype=torch.long) - torch.repeat_interleave(exclusive_cumsum(counts), counts)


@dataclass(frozen=True)
class CSR:
    """Compressed sparse rows: the neighbours of row r are col[rowptr[r]:rowptr[r+1]].

    A row is a target node and its columns are the nodes that send it messages; the graphs here
    are undirected, so that is also its neighbour list. Rows beyond num_rows read as empty.
    """

    rowptr: Tensor  # (num_rows + 1,) int64
    col: Tensor  # (nnz,) int64 neighbour ids

    @classmethod
    def from_edges(cls, dst: Tensor, src: Tensor, num_rows: int) -> CSR:
        """Rows = dst, columns = src; edges keep their given order inside a row."""
        dst, src = dst.long(), src.long()
        order = torch.argsort(dst, stable=True)
        counts = torch.bincount(dst, minlength=num_rows)
        rowptr = torch.zeros(num_rows + 1, dtype=torch.long)
        torch.cumsum(counts, 0, out=rowptr[1:])
        return cls(rowptr, src[order].contiguous())

    @property
    def num_rows(self) -> int:
        return int(self.rowptr.numel() - 1)

    @property
    def nnz(self) -> int:
        return int(self.col.numel())

    def degree(self) -> Tensor:
        return self.rowptr[1:] - self.rowptr[:-1]

    def counts(self, rows: Tensor) -> Tensor:
        valid = rows < self.num_rows
        r = torch.where(valid, rows, 0)
        return torch.where(valid, self.rowptr[r + 1] - self.rowptr[r], 0)

    def gather(self, rows: Tensor) -> tuple[Tensor, Tensor]:
        """(counts (n,), cols (sum counts,)): the neighbour lists of `rows`, concatenated in row order."""
        counts = self.counts(rows)
        starts = self.rowptr[torch.where(rows < self.num_rows, rows, 0)]
        total = int(counts.sum())
        idx = torch.repeat_interleave(starts, counts) + _segment_arange(counts, total)
        return counts, self.col[idx]

    def at(self, rows: Tensor, offsets: Tensor) -> Tensor:
        """The offsets-th neighbour of each row (offsets must be < the row's count)."""
        return self.col[self.rowptr[rows] + offsets]

    def restrict(self, keep: Tensor) -> CSR:
        """The same rows with only the columns c where keep[c] (a rank's share of the edges)."""
        mask = keep[self.col]
        rows = torch.repeat_interleave(torch.arange(self.num_rows), self.degree())
        counts = torch.bincount(rows[mask], minlength=self.num_rows)
        rowptr = torch.zeros_like(self.rowptr)
        torch.cumsum(counts, 0, out=rowptr[1:])
        return CSR(rowptr, self.col[mask].contiguous())


def concat_rows(parts: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """Merge per-row lists from several sources: row i gets part 0's list, then part 1's, ..."""
    if len(parts) == 1:
        return parts[0]
    counts = torch.stack([c for c, _ in parts]).sum(0)
    ptr = exclusive_cumsum(counts)
    out = torch.empty(int(counts.sum()), dtype=torch.long)
    before = torch.zeros_like(counts)
    for c, cols in parts:
        pos = torch.repeat_interleave(ptr + before, c) + _segment_arange(c, int(cols.numel()))
        out[pos] = cols
        before = before + c
    return counts, out


class Adjacency:
    """The serving graph: the stored CSR index plus the current request's edges (both directions).

    Rows are node ids in the request's id space: existing 0..N-1, new N..N+B-1. `base` may be a
    rank's share of the edges (graph parallelism); `degree` is always the whole graph's.
    """

    def __init__(
        self, base: CSR, base_degree: Tensor, overlay: CSR | None = None, new_degree: Tensor | None = None
    ) -> None:
        self.base = base
        self.overlay = overlay
        self._base_degree = base_degree  # (N,) whole-graph degrees of existing nodes
        self._new_degree = new_degree  # (N + B,) edges each id gains from the request, whole graph

    @classmethod
    def for_request(
        cls,
        base: CSR,
        base_degree: Tensor,
        new_edges: Tensor,
        num_new: int,
        keep_source: Tensor | None = None,
    ) -> Adjacency:
        """`new_edges` (2, E) in global ids, each added both ways.

        `keep_source` (N + B,) bool keeps only edges whose source a rank holds (graph parallelism);
        degrees always count every edge.
        """
        n = int(base_degree.numel())
        a, b = new_edges[0].long(), new_edges[1].long()
        dst, src = torch.cat([a, b]), torch.cat([b, a])
        new_degree = torch.bincount(dst, minlength=n + num_new)
        if keep_source is not None:
            keep = keep_source[src]
            dst, src = dst[keep], src[keep]
        return cls(base, base_degree, CSR.from_edges(dst, src, n + num_new), new_degree)

    @property
    def num_base(self) -> int:
        return int(self._base_degree.numel())

    def _parts(self) -> list[CSR]:
        return [self.base] if self.overlay is None else [self.base, self.overlay]

    def base_degree(self, ids: Tensor) -> Tensor:
        """Degree before the request (d_org in OMEGA's score); 0 for new nodes."""
        n = self.num_base
        return torch.where(ids < n, self._base_degree[torch.where(ids < n, ids, 0)], 0)

    def new_degree(self, ids: Tensor) -> Tensor:
        """Edges each id gained from the request (d_new in OMEGA's score)."""
        if self._new_degree is None:
            return torch.zeros_like(ids)
        return self._new_degree[ids]

    def degree(self, ids: Tensor) -> Tensor:
        """Whole-graph degree (existing edges plus the request's) of each id."""
        return self.base_degree(ids) + self.new_degree(ids)

    def changed(self) -> Tensor:
        """Existing node ids that gained an edge from the request (OMEGA's candidates), ascending."""
        if self._new_degree is None:
            return torch.empty(0, dtype=torch.long)
        return self._new_degree[: self.num_base].nonzero().view(-1)

    def neighbours(self, rows: Tensor) -> tuple[Tensor, Tensor]:
        """(counts, cols) of every row, the stored edges first, then the request's."""
        return concat_rows([p.gather(rows) for p in self._parts()])

    def sample(self, rows: Tensor, fanout: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Up to `fanout` neighbours per row, uniformly without replacement; (counts, cols) in row order.

        A row with at most `fanout` neighbours keeps them all; the others run Floyd's algorithm
        (uniform over subsets) on all rows at once: step k draws t in [0, d - fanout + k] and takes
        t, or d - fanout + k when t is taken. Cost O(rows * fanout^2), no sort over edges.
        """
        if fanout < 1:
            raise ValueError(f"fanout >= 1 must hold, but got {fanout}")
        parts = self._parts()
        counts = [p.counts(rows) for p in parts]
        deg = torch.stack(counts).sum(0)
        small = deg <= fanout
        seg, off = [], []
        s_idx = small.nonzero().view(-1)
        d_s = deg[s_idx]
        seg.append(torch.repeat_interleave(s_idx, d_s))
        off.append(_segment_arange(d_s, int(d_s.sum())))
        l_idx = (~small).nonzero().view(-1)
        if len(l_idx):
            d_l = deg[l_idx]
            chosen = torch.empty(len(l_idx), fanout, dtype=torch.long)  # (m, fanout) offsets
            for k in range(fanout):
                j = d_l - fanout + k  # (m,)
                t = (torch.rand(len(l_idx), generator=generator, dtype=torch.float64) * (j + 1)).long()
                t = torch.minimum(t, j)
                taken = (chosen[:, :k] == t.unsqueeze(1)).any(1)
                chosen[:, k] = torch.where(taken, j, t)
            seg.append(torch.repeat_interleave(l_idx, fanout))
            off.append(chosen.view(-1))
        seg_all, off_all = torch.cat(seg), torch.cat(off)
        order = torch.argsort(seg_all, stable=True)
        seg_all, off_all = seg_all[order], off_all[order]
        # resolve (row, offset) into the part that holds it: the stored edges first, then the request's
        row_ids = rows[seg_all]
        cols = torch.empty_like(off_all)
        before = torch.zeros_like(off_all)
        for p, c in zip(parts, counts, strict=True):
            c_e = c[seg_all]
            inside = (off_all >= before) & (off_all < before + c_e)
            cols[inside] = p.at(row_ids[inside], off_all[inside] - before[inside])
            before = before + c_e
        return torch.bincount(seg_all, minlength=len(rows)), cols
