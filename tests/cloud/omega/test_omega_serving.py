"""Every serving method against PyG's own whole-graph forward, and OMEGA's budget at its two ends."""

from __future__ import annotations

import pytest
import torch

from tether.cloud.omega.models import training_adjacency
from tether.cloud.omega.plan import Exact, Precomputed, Sampled, Selective, select_recompute
from tether.cloud.omega.request import Request, RequestError
from tether.cloud.omega.server import whole_graph_layers

MODELS = ["sage2", "sage3", "sage3-max", "sage3-sum", "gcn2", "gcn3", "gat2", "gat3"]


def _pyg_on_request_graph(bundle, model, req: Request) -> torch.Tensor:
    """Reference: PyG's forward over the whole existing graph plus the request, new nodes' rows."""
    split = bundle.load_split()
    base = split.base
    n, b = base.num_nodes, req.size
    new = torch.stack([req.edges[0] + n, req.edges[1]])
    ei = torch.cat([base.edge_index, new, new.flip(0)], 1)
    x = torch.cat([base.x, req.x])
    with torch.no_grad():
        return model(x, training_adjacency(ei, n + b, model.config.kind), ei)[n:]


@pytest.mark.parametrize("name", MODELS)
def test_precompute_matches_pyg_forward(tiny_bundle, name) -> None:
    model = tiny_bundle.load_model(name)
    base = tiny_bundle.load_split().base
    layers = whole_graph_layers(model, tiny_bundle.index(), base.x)
    with torch.no_grad():
        ref = model(
            base.x, training_adjacency(base.edge_index, base.num_nodes, model.config.kind), base.edge_index
        )
    torch.testing.assert_close(layers[-1], ref, atol=1e-5, rtol=1e-4)
    store = tiny_bundle.store(name)
    ids = torch.tensor([0, 7, base.num_nodes - 1])
    torch.testing.assert_close(store.gather(1, ids), layers[1][ids])


@pytest.mark.parametrize("name", MODELS)
def test_exact_and_full_budget_match_pyg_on_the_grown_graph(tiny_bundle, name) -> None:
    server = tiny_bundle.server(name)
    split = tiny_bundle.load_split()
    for r in (0, split.num_requests - 1):
        req = split.request(r)
        ref = _pyg_on_request_graph(tiny_bundle, tiny_bundle.load_model(name), req)
        exact = server.infer(req, Exact())
        torch.testing.assert_close(exact, ref, atol=1e-5, rtol=1e-4)
        # budget 100%: every changed neighbour recomputed = exact (L <= 3)
        full = server.infer(req, Selective(1.0))
        assert server.last.recomputed == server.last.candidates > 0
        torch.testing.assert_close(full, exact, atol=1e-5, rtol=1e-4)
        # budget 0: nothing recomputed = precomputed embeddings only, and that differs from exact
        none = server.infer(req, Selective(0.0))
        assert server.last.recomputed == 0
        pre = server.infer(req, Precomputed())
        torch.testing.assert_close(none, pre, atol=0, rtol=0)
        assert (pre - exact).abs().max() > 1e-3


@pytest.mark.parametrize("name", ["sage3", "gcn3", "gat3", "sage3-sum"])
def test_sampling_with_fanouts_above_every_degree_is_exact(tiny_bundle, name) -> None:
    server = tiny_bundle.server(name)
    req = tiny_bundle.load_split().request(1)
    big = int(tiny_bundle.index().degree.max()) + req.size
    exact = server.infer(req, Exact())
    torch.testing.assert_close(server.infer(req, Sampled((big, big, big))), exact, atol=1e-5, rtol=1e-4)
    # the paper's fan-outs read fewer edges than exact
    server.infer(req, Sampled())
    sampled_edges = server.last.edges
    server.infer(req, Exact())
    assert sampled_edges < server.last.edges


def test_budget_recomputes_the_highest_scores_first(tiny_bundle) -> None:
    from tether.cloud.omega.csr import Adjacency

    index = tiny_bundle.index()
    req = tiny_bundle.load_split().request(0)
    n = index.num_nodes
    adj = Adjacency.for_request(
        index.csr, index.degree, torch.stack([req.edges[0] + n, req.edges[1]]), req.size
    )
    cand = adj.changed()
    score = adj.new_degree(cand) / adj.degree(cand)
    chosen, total = select_recompute(adj, 0.25)
    assert total == cand.numel() and chosen.numel() == -(-total // 4)
    threshold = (adj.new_degree(chosen) / adj.degree(chosen)).min()
    rest = score[~torch.isin(cand, chosen)]
    assert bool((rest <= threshold).all())
    sizes = [select_recompute(adj, b)[0].numel() for b in (0.0, 0.1, 0.5, 1.0)]
    assert sizes == sorted(sizes) and sizes[0] == 0 and sizes[-1] == total


def test_more_budget_moves_toward_exact(tiny_bundle) -> None:
    server = tiny_bundle.server("sage3")
    req = tiny_bundle.load_split().request(2)
    exact = server.infer(req, Exact())
    errors = [float((server.infer(req, Selective(b)) - exact).abs().mean()) for b in (0.0, 0.5, 1.0)]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-5


def test_unknown_node_id_is_rejected_with_the_rule_and_fix(tiny_bundle) -> None:
    server = tiny_bundle.server("sage2")
    req = tiny_bundle.load_split().request(0)
    n, b = server.index.num_nodes, req.size
    bad = Request(req.x, torch.tensor([[0, 1], [3, n + b + 5]]))
    with pytest.raises(RequestError) as err:
        server.infer(bad, Exact())
    msg = str(err.value)
    assert f"unknown node id {n + b + 5}" in msg and f"0..{n - 1}" in msg and "connect new nodes only" in msg
    with pytest.raises(RequestError, match=r"indices 0\.\.47"):
        server.infer(Request(req.x, torch.tensor([[b], [3]])), Selective(0.5))
    with pytest.raises(RequestError, match="to itself"):
        server.infer(Request(req.x, torch.tensor([[2], [n + 2]])), Exact())


def test_wrong_feature_width_is_rejected_with_the_rule_and_fix(tiny_bundle) -> None:
    server = tiny_bundle.server("gat2")
    req = tiny_bundle.load_split().request(0)
    with pytest.raises(RequestError) as err:
        server.infer(Request(req.x[:, :10], req.edges), Selective(0.2))
    msg = str(err.value)
    assert "width 64" in msg and "got 10" in msg and "one row of 64 features per new node" in msg
    with pytest.raises(RequestError, match="finite"):
        server.infer(Request(torch.full_like(req.x, float("nan")), req.edges), Exact())
