"""Computation-graph parallelism: partial aggregates merged across ranks equal single-process results.

The first test splits a block's edges over three simulated ranks in one process (the merge rules:
sum, mean, max, GAT's log-sum-exp); the second spawns real gloo ranks on loopback.
"""

from __future__ import annotations

import pytest
import torch

from tether.cloud.omega import kernel
from tether.cloud.omega.csr import Adjacency
from tether.cloud.omega.parallel import ParallelServer
from tether.cloud.omega.plan import Exact, Precomputed, Selective

PARALLEL_MODELS = ["sage3", "sage3-max", "gcn3", "gat2"]


def _split_block(block: kernel.Block, ranks: int, gen: torch.Generator) -> list[kernel.Block]:
    """The block's edges dealt at random to `ranks` blocks (same targets and source rows)."""
    row = block.row_index()
    who = torch.randint(0, ranks, (row.numel(),), generator=gen)
    out = []
    for r in range(ranks):
        keep = who == r
        counts = torch.bincount(row[keep], minlength=block.num_dst)
        rowptr = torch.zeros(block.num_dst + 1, dtype=torch.long)
        torch.cumsum(counts, 0, out=rowptr[1:])
        out.append(
            kernel.Block(
                block.dst, block.src, rowptr, block.col[keep], block.self_src, block.deg, block.count
            )
        )
    return out


@pytest.mark.parametrize("name", ["sage3", "sage3-max", "sage3-sum", "gcn3", "gat3"])
def test_partial_aggregates_merge_to_the_whole(tiny_bundle, name) -> None:
    from tether.cloud.omega.plan import LayerPlan, Scratch
    from tether.cloud.omega.server import _build_block

    model = tiny_bundle.load_serving(name)
    index = tiny_bundle.index()
    n = index.num_nodes
    targets = torch.arange(0, n, 7)
    adj = Adjacency(index.csr, index.degree)
    counts, cols = adj.neighbours(targets)
    lp = LayerPlan(targets, counts, cols, index.degree[targets].float())
    own = torch.ones_like(targets, dtype=torch.bool)
    block, need = _build_block(
        lp, own, torch.empty(0, dtype=torch.long), model.config.kind == "gat", adj, Scratch(n)
    )
    layer = 1
    h = torch.randn(block.src.numel(), model.config.hidden)
    h_own = h[block.self_src]
    a_dst = kernel.target_terms(model, layer, h_own) if model.config.kind == "gat" else None
    whole = kernel.aggregate(model, layer, block, h, a_dst)
    parts = [
        kernel.aggregate(model, layer, b, h, a_dst)
        for b in _split_block(block, 3, torch.Generator().manual_seed(0))
    ]
    merged = kernel.merge(parts)
    ref = kernel.finish(model, layer, whole, h_own, block.deg, block.count)
    got = kernel.finish(model, layer, merged, h_own, block.deg, block.count)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-4)
    if model.config.kind == "gat":  # the shares really were rescaled: partial maxima differ from the whole
        assert not torch.equal(parts[0].m, whole.m)


def test_graph_parallel_ranks_match_single_process(tiny_bundle) -> None:
    split = tiny_bundle.load_split()
    requests = [split.request(0), split.request(split.num_requests - 1)]
    methods = [Exact(), Selective(0.3), Precomputed()]
    reference = {}
    for name in PARALLEL_MODELS:
        server = tiny_bundle.server(name)
        for i, req in enumerate(requests):
            for m in methods:
                reference[name, i, m] = server.infer(req, m)
    with ParallelServer(tiny_bundle.root, PARALLEL_MODELS, world_size=2, threads=1) as ps:
        for (name, i, m), ref in reference.items():
            got = ps.infer(requests[i], m, model=name)
            torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-4, msg=f"{name} request {i} {m}")
        # both ranks did work: the edges were split between them
        ps.infer(requests[0], Exact(), model="sage3")
        edges = [s.edges for s in ps.last]
        assert len(edges) == 2 and min(edges) > 0
