"""Generated graphs, the serving split, user graph files and the embedding store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tether.cloud.omega.graphs import GraphSpec, generate_graph, split_for_serving
from tether.cloud.omega.loaders import GraphFileError, load_graph_files
from tether.cloud.omega.request import validate_request
from tether.cloud.omega.store import EmbeddingStore, StoreError, write_store


def test_generated_graph_is_undirected_homophilous_and_holds_out_each_community() -> None:
    spec = GraphSpec(
        num_nodes=3000, avg_degree=12, community_size=60, held_out_share=0.3, batch_size=64, seed=5
    )
    g, community, held = generate_graph(spec)
    n = g.num_nodes
    src, dst = g.edge_index
    assert bool((src != dst).all())
    fwd = set((src * n + dst).tolist())
    assert len(fwd) == g.num_edges and fwd == set((dst * n + src).tolist())  # no duplicates, both directions
    assert 0.8 * spec.avg_degree < g.num_edges / n < 1.05 * spec.avg_degree
    same = float((g.y[src] == g.y[dst]).float().mean())
    assert same > 0.6  # random pairs would agree 1/8 of the time
    deg = torch.bincount(dst, minlength=n).float()
    assert deg.max() > 4 * deg.mean()  # a power-law tail
    for k in (0, 17):
        share = held[community == k].mean()
        assert abs(share - 0.3) < 0.05
    # new nodes' features carry more class signal than existing ones'
    centroid = torch.stack([g.x[g.y == c].mean(0) for c in range(spec.num_classes)])
    fit = (g.x * centroid[g.y]).sum(1)
    held_t = torch.from_numpy(held)
    assert fit[held_t].mean() > 1.5 * fit[~held_t].mean()


def test_spec_errors_name_the_rule() -> None:
    with pytest.raises(ValueError, match=r"0 < held_out_share < 1 must hold, but got 1\.5"):
        GraphSpec(held_out_share=1.5)


def test_requests_are_valid_and_only_reach_existing_nodes_or_their_own_batch() -> None:
    spec = GraphSpec(num_nodes=2000, avg_degree=10, community_size=50, batch_size=50, seed=2)
    g, community, held = generate_graph(spec)
    split = split_for_serving(g, held, community=community, batch_size=50)
    nb = split.num_base
    assert split.base.edge_index.max() < nb and split.num_requests == int(held.sum()) // 50
    full = set((split.full.edge_index[0] * split.full.num_nodes + split.full.edge_index[1]).tolist())
    for r in (0, split.num_requests - 1):
        req = split.request(r)
        validate_request(req, num_nodes=nb, feature_dim=spec.feature_dim)
        lo = nb + r * 50
        a = req.edges[0] + lo
        b = torch.where(req.edges[1] >= nb, req.edges[1] - nb + lo, req.edges[1])
        assert all(int(x) * split.full.num_nodes + int(y) in full for x, y in zip(a, b, strict=True))
        torch.testing.assert_close(req.x, split.full.x[lo : lo + 50])
    # a request is the held-out nodes of a few whole communities (15 per community here), not a random 50
    first = np.sort(community[held])[:50]
    assert len(np.unique(first)) <= 5


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_user_graph_files_load_and_errors_name_file_and_line(tmp_path) -> None:
    feats = _write(tmp_path / "x.csv", "0.1,0.2\n0.3,0.4\n# comment\n0.5,0.6\n1,1\n")
    labels = _write(tmp_path / "y.txt", "0\n1\n1\n0\n")
    edges = _write(tmp_path / "e.txt", "0 1\n1 2  # trailing comment\n2 3\n3 2\n1 1\n")
    g = load_graph_files(edges, feats, labels)
    assert g.num_nodes == 4 and g.num_edges == 6 and g.num_classes == 2  # 3 undirected edges, loop dropped
    bad = _write(tmp_path / "bad.txt", "0 1\n1 x\n")
    with pytest.raises(
        GraphFileError, match=r"bad\.txt:2: an edge line must start with two non-negative integer"
    ):
        load_graph_files(bad, feats, labels)
    far = _write(tmp_path / "far.txt", "0 1\n1 9\n")
    with pytest.raises(GraphFileError, match=r"edge 1 \(1, 9\) names a node outside 0\.\.3"):
        load_graph_files(far, feats, labels)
    ragged = _write(tmp_path / "ragged.csv", "0.1,0.2\n0.3\n")
    with pytest.raises(
        GraphFileError, match=r"ragged\.csv:2: every feature row must have the first row's 2 values"
    ):
        load_graph_files(edges, ragged, labels)
    np.save(tmp_path / "e.npy", np.array([[0, 1], [1, 2], [2, 3]]))  # (E, 2) is read as edges too
    assert load_graph_files(tmp_path / "e.npy", feats, labels).num_edges == 6


def test_store_gathers_across_partitions_in_any_order(tmp_path) -> None:
    h0, h1 = torch.randn(103, 5), torch.randn(103, 7)
    write_store(tmp_path / "s", [h0, h1], num_partitions=4, model_name="m", graph_name="g")
    store = EmbeddingStore.open(tmp_path / "s")
    assert store.num_partitions == 4 and store.dims == [5, 7]
    ids = torch.tensor([102, 0, 51, 26, 25, 77, 3])
    torch.testing.assert_close(store.gather(1, ids), h1[ids])
    torch.testing.assert_close(store.gather(0, torch.sort(ids).values), h0[torch.sort(ids).values])
    with pytest.raises(StoreError, match="run `tether omega precompute`"):
        EmbeddingStore.open(tmp_path / "missing")
    with pytest.raises(StoreError, match=r"node ids 0\.\.102"):
        store.gather(0, torch.tensor([5, 103]))
