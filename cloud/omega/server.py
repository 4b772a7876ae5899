"""The OMEGA server: one executor runs every method's plan over the CSR index, the embedding store and
the request, in one process or as one rank of many (OMEGA, arXiv 2501.08547, sections 4-5).

Per layer the executor builds this rank's block (sources: the rows computed at the layer below,
then store rows), aggregates its edges, sends partial aggregates to the targets' owners, and
the owners merge and update. With one rank the exchange is the identity.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from tether.cloud.omega import kernel
from tether.cloud.omega.comm import Comm, LocalComm
from tether.cloud.omega.csr import CSR, Adjacency, concat_rows
from tether.cloud.omega.layers import ServingModel
from tether.cloud.omega.plan import LayerPlan, Method, Plan, Scratch, build_plan
from tether.cloud.omega.request import Request, validate_request
from tether.cloud.omega.store import EmbeddingStore, partition_bounds

__all__ = ["GraphIndex", "OmegaServer", "RequestStats", "whole_graph_layers"]


@dataclass
class GraphIndex:
    """The existing graph as the server holds it: CSR (this rank's share of the edges), degrees, owners."""

    csr: CSR  # rows = all N targets; columns = the sources this rank holds
    degree: Tensor  # (N,) whole-graph degrees
    feature_dim: int
    bounds: Tensor  # (P + 1,) rank p owns existing ids [bounds[p], bounds[p+1])
    rank: int = 0

    @property
    def num_nodes(self) -> int:
        return int(self.degree.numel())

    @property
    def world_size(self) -> int:
        return int(self.bounds.numel() - 1)

    def owner(self, ids: Tensor) -> Tensor:
        """Owning rank of each id; new node N + j belongs to rank j mod P."""
        n = self.num_nodes
        existing = torch.searchsorted(self.bounds, ids, right=True) - 1
        return torch.where(ids < n, existing.clamp(max=self.world_size - 1), (ids - n) % self.world_size)

    @classmethod
    def from_edges(cls, edge_index: Tensor, num_nodes: int, feature_dim: int) -> GraphIndex:
        csr = CSR.from_edges(edge_index[1], edge_index[0], num_nodes)
        return cls(csr, csr.degree(), feature_dim, partition_bounds(num_nodes, 1))

    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        np.save(path / "csr_rowptr.npy", self.csr.rowptr.numpy())
        np.save(path / "csr_col.npy", self.csr.col.numpy())
        (path / "feature_dim.txt").write_text(f"{self.feature_dim}\n")

    @classmethod
    def load(cls, path: Path, *, rank: int = 0, world_size: int = 1) -> GraphIndex:
        """The index at `path`; with world_size > 1, only the edges whose source `rank` owns."""
        for f in ("csr_rowptr.npy", "csr_col.npy", "feature_dim.txt"):
            if not (path / f).is_file():
                raise FileNotFoundError(
                    f"{path / f} is missing: build the graph with `tether omega train` first"
                )
        rowptr = torch.from_numpy(np.load(path / "csr_rowptr.npy"))
        col = torch.from_numpy(np.load(path / "csr_col.npy"))
        csr = CSR(rowptr, col)
        n = csr.num_rows
        index = cls(
            csr,
            csr.degree(),
            int((path / "feature_dim.txt").read_text()),
            partition_bounds(n, world_size),
            rank,
        )
        if world_size > 1:
            index.csr = csr.restrict(index.owner(torch.arange(n)) == rank)
        return index


@dataclass
class RequestStats:
    method: str
    batch: int
    candidates: int  # existing neighbours whose neighbourhood changed
    recomputed: int  # of which recomputed
    edges: int  # edges aggregated, summed over layers (this rank)
    plan_ms: float
    total_ms: float
    layer_ms: list[float] = field(default_factory=list)


class OmegaServer:
    """Serves batches of new nodes with any method; one instance per rank.

    Not thread safe: requests are served one at a time (the scratch buffers are shared).
    """

    def __init__(
        self, model: ServingModel, index: GraphIndex, store: EmbeddingStore, *, comm: Comm | None = None
    ) -> None:
        if not isinstance(model, ServingModel):  # a trained GNN module: serve its parameters
            model = ServingModel.from_module(model)
        self.model = model
        self.index = index
        self.store = store
        self.comm = comm or LocalComm()
        if store.num_nodes != index.num_nodes:
            raise ValueError(
                f"the store holds {store.num_nodes} nodes but the graph index {index.num_nodes}; "
                "rebuild the store with `tether omega precompute` for this graph"
            )
        dims = model.config.dims()[: model.config.num_layers]
        if store.dims != dims:
            raise ValueError(
                f"the store's layer widths {store.dims} do not match model {model.config.name}'s {dims}; "
                "rebuild the store with `tether omega precompute` for this model"
            )
        self.scratch = Scratch(index.num_nodes + 1024)
        self.last: RequestStats | None = None
        # (N,) bool: existing nodes this rank owns (their out-edges are the ones it aggregates)
        self._owned = index.owner(torch.arange(index.num_nodes)) == self.comm.rank

    def infer(self, request: Request, method: Method) -> Tensor | None:
        """(B, C) logits of the request's new nodes on rank 0 (None on the other ranks)."""
        validate_request(request, num_nodes=self.index.num_nodes, feature_dim=self.index.feature_dim)
        t0 = time.perf_counter()
        n, b = self.index.num_nodes, request.size
        self.scratch.fit(n + b)
        edges = torch.stack([request.edges[0].long() + n, request.edges[1].long()])
        keep = None
        if self.comm.world_size > 1:
            new_owned = torch.arange(b) % self.comm.world_size == self.comm.rank
            keep = torch.cat([self._owned, new_owned])
        adj = Adjacency.for_request(self.index.csr, self.index.degree, edges, b, keep)
        queries = torch.arange(n, n + b)
        plan = build_plan(
            method,
            adj,
            queries,
            self.model.config.num_layers,
            owner=self.index.owner,
            comm=self.comm,
            scratch=self.scratch,
        )
        t1 = time.perf_counter()
        ids, h, layer_ms = run_plan(
            self.model, plan, adj, self._loader(request), self.index, self.comm, self.scratch
        )
        out = self._collect(ids, h, n, b)
        t2 = time.perf_counter()
        self.last = RequestStats(
            method.name,
            b,
            plan.candidates,
            plan.recomputed,
            plan.edges,
            (t1 - t0) * 1e3,
            (t2 - t0) * 1e3,
            layer_ms,
        )
        return out

    def _loader(self, request: Request):
        n = self.index.num_nodes

        def load(layer: int, ids: Tensor, out: Tensor) -> None:
            # ids ascending: existing nodes first, then new ones (N + j)
            first_new = int(torch.searchsorted(ids, n))
            if first_new < ids.numel() and layer > 0:
                raise RuntimeError(
                    f"plan bug: layer {layer} reads new node rows that no layer below computed"
                )
            self.store.gather(layer, ids[:first_new], out[:first_new])
            if first_new < ids.numel():
                out[first_new:] = request.x[ids[first_new:] - n]

        return load

    def _collect(self, ids: Tensor, h: Tensor, n: int, b: int) -> Tensor | None:
        parts = self.comm.gather((ids, h))
        if parts is None:
            return None
        out = torch.empty(b, h.shape[1])
        for pid, ph in parts:
            out[pid - n] = ph
        return out


def run_plan(
    model: ServingModel,
    plan: Plan,
    adj: Adjacency,
    load: Callable[[int, Tensor, Tensor], None],
    index: GraphIndex,
    comm: Comm,
    scratch: Scratch,
    keep_layers: list[Tensor] | None = None,
) -> tuple[Tensor, Tensor, list[float]]:
    """Execute `plan`; returns (ids, outputs) of the last layer's targets this rank owns, and per-layer ms.

    `load(layer, ids, out)` writes rows of h^layer for sources no layer below computed here
    (ids ascending) into `out`.
    `keep_layers`, if a list, receives every layer's outputs (precompute).
    """
    gat = kernel.needs_target_terms(model)
    prev_ids = torch.empty(0, dtype=torch.long)
    prev_h = torch.empty(0, model.config.in_dim)
    layer_ms = []
    for i, lp in enumerate(plan.layers):
        t = time.perf_counter()
        if comm.world_size > 1:
            owners = index.owner(lp.targets)
            counts_by_owner = torch.bincount(owners, minlength=comm.world_size).tolist()
            own: Tensor | None = owners == comm.rank
        else:  # one rank owns every target: skip the masks
            counts_by_owner, own = [int(lp.targets.numel())], None
        block, need = _build_block(lp, own, prev_ids, gat, adj, scratch)
        h_src = prev_h
        if need.numel():
            k = prev_h.shape[0]
            h_src = torch.empty(k + need.numel(), model.config.dims()[i])
            h_src[:k] = prev_h
            load(i, need, h_src[k:])
        self_rows = block.self_src if own is None else block.self_src[own]
        n_own = self_rows.numel()
        if n_own <= h_src.shape[0] and torch.equal(self_rows, torch.arange(n_own)):
            h_own = h_src[:n_own]  # targets lead the source rows (single process): a view, no copy
        else:
            h_own = h_src[self_rows]  # (n_own, F) own rows of the owned targets
        a_dst = None
        if gat:
            a_dst = comm.from_owners(kernel.target_terms(model, i, h_own), counts_by_owner)
        part = kernel.aggregate(model, i, block, h_src, a_dst)
        agg = kernel.merge(_exchange(part, counts_by_owner, comm))
        deg, count = (block.deg, block.count) if own is None else (block.deg[own], block.count[own])
        out = kernel.finish(model, i, agg, h_own, deg, count)
        prev_ids, prev_h = (lp.targets if own is None else lp.targets[own]), out
        if keep_layers is not None:
            keep_layers.append(out)
        layer_ms.append((time.perf_counter() - t) * 1e3)
    return prev_ids, prev_h, layer_ms


def _build_block(
    lp: LayerPlan, own: Tensor | None, prev_ids: Tensor, self_loops: bool, adj: Adjacency, scratch: Scratch
) -> tuple[kernel.Block, Tensor]:
    """This rank's block for a layer plan: sources = rows computed below, then rows to load (`need`).

    `own` marks the targets this rank owns (None: all of them).
    """
    pos = scratch.pos
    k = int(prev_ids.numel())
    pos[prev_ids] = torch.arange(k)
    owned = lp.targets if own is None else lp.targets[own]
    need = scratch.new_ids(torch.cat([lp.cols, owned]), prev_ids)
    pos[need] = torch.arange(k, k + int(need.numel()))
    col = pos[lp.cols]
    self_src = pos[lp.targets] if own is None else torch.where(own, pos[lp.targets], -1)
    counts = lp.counts
    if self_loops:  # GAT's self loop is an edge, held by the target's owner
        mine = torch.ones_like(counts) if own is None else own.long()
        counts, col = concat_rows([(counts, col), (mine, self_src if own is None else self_src[own])])
    pos[prev_ids] = -1
    pos[need] = -1
    rowptr = torch.zeros(counts.numel() + 1, dtype=torch.long)
    torch.cumsum(counts, 0, out=rowptr[1:])
    deg = adj.degree(lp.targets).float()
    src = torch.cat([prev_ids, need])
    return kernel.Block(lp.targets, src, rowptr, col, self_src, deg, lp.count), need


def _exchange(part: kernel.Partial, counts: list[int], comm: Comm) -> list[kernel.Partial]:
    """Send each target's partial aggregate to its owner; the owner's P partials come back."""
    if comm.world_size == 1:
        return [part]
    tensors = part.tensors()
    n = tensors[0].shape[0]
    flat = [t.reshape(n, -1) for t in tensors]
    widths = [f.shape[1] for f in flat]
    received = comm.to_owners(torch.cat(flat, 1), counts)
    out = []
    for block in received:
        pieces = block.split(widths, 1)
        shaped = [pc.reshape(-1, *t.shape[1:]) for pc, t in zip(pieces, tensors, strict=True)]
        out.append(kernel.Partial(part.kind, *shaped))
    return out


def whole_graph_layers(model, index: GraphIndex, x: Tensor) -> list[Tensor]:
    """h^0 .. h^L of every existing node (precompute), with the serving kernel in one process.

    `model`: a ServingModel or a trained GNN module.
    """
    if not isinstance(model, ServingModel):
        model = ServingModel.from_module(model)
    n = index.num_nodes
    adj = Adjacency(index.csr, index.degree)
    everyone = torch.arange(n)
    counts, cols = index.csr.degree(), index.csr.col
    lp = LayerPlan(everyone, counts, cols, index.degree.float())
    plan = Plan([lp] * model.config.num_layers)
    layers: list[Tensor] = [x]

    def load(layer: int, ids: Tensor, out: Tensor) -> None:
        torch.index_select(x, 0, ids, out=out)

    run_plan(model, plan, adj, load, index, LocalComm(), Scratch(n), keep_layers=layers)
    return layers
