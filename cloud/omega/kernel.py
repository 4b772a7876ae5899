"""Message passing over one block, split into partial aggregation, merge and update so that the same
code serves one process and many (OMEGA, arXiv 2501.08547, section 5: computation graph parallelism).

A rank aggregates the edges whose source it holds into a partial aggregate per target; the
target's owner merges the partials of all ranks and applies the layer's update. The merges:
sums add; means add and divide by the target's whole in-degree; maxima take the max; GAT's
softmax keeps, per target and head, the partial max logit m, the partial exp-sum s = sum e^(e-m)
and the weighted sum v = sum e^(e-m) x, and merges by rescaling to the common max (log-sum-exp).
With one rank, merging is the identity and this is plain single-process inference.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from tether.cloud.omega.csr import sparse_rows
from tether.cloud.omega.layers import ServingModel

__all__ = ["Block", "Partial", "aggregate", "finish", "merge", "needs_target_terms", "target_terms"]


@dataclass
class Block:
    """One layer's message-flow graph as one rank holds it.

    Targets are the same, in the same order, on every rank; sources and edges are this rank's.
    """

    dst: Tensor  # (n_dst,) global ids of the layer's targets
    src: Tensor  # (n_src,) global ids of the source rows held here
    rowptr: Tensor  # (n_dst + 1,) CSR over targets of this rank's edges (self loops included for GAT)
    col: Tensor  # (nnz,) local source row of each edge
    self_src: Tensor  # (n_dst,) local source row of each target's own embedding, -1 if another rank's
    deg: Tensor  # (n_dst,) float, whole-graph in-degree of each target (no self loop)
    count: Tensor  # (n_dst,) float, neighbour messages each target gets over all ranks (= deg unless sampled)

    @property
    def num_dst(self) -> int:
        return int(self.dst.numel())

    def row_index(self) -> Tensor:
        """(nnz,) target row of each edge."""
        return torch.repeat_interleave(torch.arange(self.num_dst), self.rowptr[1:] - self.rowptr[:-1])

    def matrix(self, values: Tensor | None, n_src: int) -> Tensor:
        """(n_dst, n_src) sparse CSR adjacency with the given per-edge values (ones by default)."""
        if values is None:
            values = torch.ones(self.col.numel())
        return sparse_rows(self.rowptr, self.col, values, (self.num_dst, n_src))


@dataclass
class Partial:
    """A rank's partial aggregate of one layer, rows = the block's targets."""

    kind: str  # "sum" | "max" | "softmax"
    value: Tensor  # sum: (n, F); max: (n, F), -inf where no local edge; softmax: v (n, H, C)
    m: Tensor | None = None  # softmax: (n, H) partial max logit, -inf where no local edge
    s: Tensor | None = None  # softmax: (n, H) partial sum of exp(logit - m)

    def tensors(self) -> list[Tensor]:
        return [t for t in (self.value, self.m, self.s) if t is not None]


def _reduce(model: ServingModel) -> str:
    cfg = model.config
    if cfg.kind == "gat":
        return "softmax"
    return "max" if cfg.kind == "sage" and cfg.aggr == "max" else "sum"


def needs_target_terms(model: ServingModel) -> bool:
    """GAT needs each target's attention term at the ranks holding its sources."""
    return model.config.kind == "gat"


def target_terms(model: ServingModel, layer: int, h_dst: Tensor) -> Tensor:
    """GAT: (n, H) attention logits a_dst . W h_i of targets whose own rows `h_dst` (n, F) are given."""
    p = model.layers[layer]
    x = F.linear(h_dst, p.weight).view(-1, p.heads, p.channels)  # (n, H, C)
    return (x * p.att_dst).sum(-1)


@torch.no_grad()
def aggregate(
    model: ServingModel, layer: int, block: Block, h_src: Tensor, a_dst: Tensor | None = None
) -> Partial:
    """This rank's partial aggregate over its edges; `h_src` (n_src, F) rows follow block.src.

    GAT also takes `a_dst` (n_dst, H) from target_terms, gathered from the targets' owners.
    """
    reduce = _reduce(model)
    n_src = h_src.shape[0]
    local = (block.rowptr[1:] - block.rowptr[:-1]).float()  # (n_dst,) edges held here
    if reduce == "sum":
        if (model.config.kind == "sage" and model.config.aggr == "mean") or torch.equal(
            block.count, block.deg
        ):
            values = None  # every neighbour present: plain sum
        else:
            # GCN and SAGE-sum: a sampled row stands for the whole neighbourhood (scale deg / count)
            scale = torch.where(block.count > 0, block.deg / block.count.clamp(min=1), 0.0)
            values = scale[block.row_index()]
        return Partial("sum", torch.sparse.mm(block.matrix(values, n_src), h_src))
    if reduce == "max":
        out = torch.sparse.mm(block.matrix(None, n_src), h_src, "max")
        return Partial("max", out.masked_fill(local.view(-1, 1) == 0, float("-inf")))
    p = model.layers[layer]
    heads = p.heads
    x = F.linear(h_src, p.weight).view(-1, heads, p.channels)  # (n_src, H, C)
    a_src = (x * p.att_src).sum(-1)  # (n_src, H)
    row = block.row_index()
    logit = F.leaky_relu(a_src[block.col] + a_dst[row], p.negative_slope)  # (nnz, H)
    m = torch.full((block.num_dst, heads), float("-inf"))
    m = m.scatter_reduce(0, row.view(-1, 1).expand(-1, heads), logit, "amax", include_self=True)
    p = torch.exp(logit - m[row])  # (nnz, H)
    s = torch.zeros(block.num_dst, heads).index_add_(0, row, p)
    v = torch.stack(
        [
            torch.sparse.mm(block.matrix(p[:, k].contiguous(), n_src), x[:, k].contiguous())
            for k in range(heads)
        ],
        1,
    )  # (n_dst, H, C)
    return Partial("softmax", v, m, s)


def merge(partials: list[Partial]) -> Partial:
    """One partial per rank, same rows -> the whole aggregate (exact up to float rounding)."""
    if len(partials) == 1:
        return partials[0]
    kind = partials[0].kind
    if kind == "sum":
        return Partial(kind, torch.stack([p.value for p in partials]).sum(0))
    if kind == "max":
        return Partial(kind, torch.stack([p.value for p in partials]).amax(0))
    m_all = torch.stack([p.m for p in partials])  # (P, n, H)
    m = m_all.amax(0)
    # a rank with no edge into a target has m = -inf: its share is e^-inf = 0
    w = torch.where(torch.isfinite(m_all), torch.exp(m_all - m.clamp(min=-1e30)), 0.0)
    s = (torch.stack([p.s for p in partials]) * w).sum(0)
    v = (torch.stack([p.value for p in partials]) * w.unsqueeze(-1)).sum(0)
    return Partial(kind, v, m, s)


@torch.no_grad()
def finish(
    model: ServingModel, layer: int, agg: Partial, h_dst: Tensor, deg: Tensor, count: Tensor
) -> Tensor:
    """The layer's output for targets whose merged aggregate and own rows `h_dst` (n, F) are given.

    `deg`, `count` (n,): whole-graph degree and neighbour messages received. ReLU except on the last layer.
    """
    cfg, p = model.config, model.layers[layer]
    if cfg.kind == "gcn":
        # D^-1 (A + I): (sum of neighbours [scaled] + self) / (deg + 1), then the shared weight
        out = F.linear((agg.value + h_dst) / (deg + 1).view(-1, 1), p.weight, p.bias)
    elif cfg.kind == "sage":
        neigh = agg.value
        if cfg.aggr == "mean":
            neigh = neigh / count.clamp(min=1).view(-1, 1)
        elif cfg.aggr == "max":
            neigh = torch.where(torch.isfinite(neigh), neigh, 0.0)  # PyG: a node with no neighbour gets 0
        out = F.linear(neigh, p.weight, p.bias) + F.linear(h_dst, p.root_weight)
    else:
        out = agg.value / agg.s.unsqueeze(-1)  # (n, H, C)
        out = out.reshape(out.shape[0], -1) if p.concat else out.mean(1)
        out = out + p.bias
    return out if layer == len(model.layers) - 1 else F.relu(out)
