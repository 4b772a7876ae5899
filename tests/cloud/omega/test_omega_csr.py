"""The CSR index, the request overlay and the vectorised sampler against plain-Python references."""

from __future__ import annotations

import torch

from tether.cloud.omega.csr import CSR, Adjacency, concat_rows


def _random_graph(n: int, m: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randint(0, n, (m,), generator=g), torch.randint(0, n, (m,), generator=g)
    keep = a != b
    a, b = a[keep], b[keep]
    key = torch.unique(torch.cat([a * n + b, b * n + a]))
    return torch.stack([key // n, key % n])


def _lists(counts: torch.Tensor, cols: torch.Tensor) -> list[list[int]]:
    out, at = [], 0
    for c in counts.tolist():
        out.append(cols[at : at + c].tolist())
        at += c
    return out


def test_gather_returns_each_rows_neighbours_in_order() -> None:
    n = 200
    ei = _random_graph(n, 1500, 0)
    csr = CSR.from_edges(ei[1], ei[0], n)
    rows = torch.tensor([5, 0, 199, 5, 17])
    counts, cols = csr.gather(rows)
    for r, got in zip(rows.tolist(), _lists(counts, cols), strict=True):
        assert sorted(got) == sorted(ei[0][ei[1] == r].tolist())
    # rows beyond the index (new nodes) read as empty
    counts, cols = csr.gather(torch.tensor([n, n + 3]))
    assert counts.tolist() == [0, 0] and cols.numel() == 0


def test_concat_rows_interleaves_parts_row_by_row() -> None:
    a = (torch.tensor([2, 0, 1]), torch.tensor([10, 11, 12]))
    b = (torch.tensor([1, 2, 0]), torch.tensor([20, 21, 22]))
    counts, cols = concat_rows([a, b])
    assert _lists(counts, cols) == [[10, 11, 20], [21, 22], [12]]


def test_request_overlay_adds_both_directions_and_degrees() -> None:
    n = 50
    ei = _random_graph(n, 200, 1)
    csr = CSR.from_edges(ei[1], ei[0], n)
    # two new nodes: 50 -> {3, 7}, 51 -> {3, 50}
    new_edges = torch.tensor([[50, 50, 51, 51], [3, 7, 3, 50]])
    adj = Adjacency.for_request(csr, csr.degree(), new_edges, 2)
    counts, cols = adj.neighbours(torch.tensor([3, 50, 51]))
    lists = _lists(counts, cols)
    assert lists[0][-2:] == [50, 51] and len(lists[0]) == int(csr.degree()[3]) + 2
    assert sorted(lists[1]) == [3, 7, 51] and sorted(lists[2]) == [3, 50]
    assert adj.degree(torch.tensor([3, 7, 50])).tolist() == [
        int(csr.degree()[3]) + 2,
        int(csr.degree()[7]) + 1,
        3,
    ]
    assert adj.changed().tolist() == [3, 7]
    assert adj.new_degree(torch.tensor([3, 7, 8])).tolist() == [2, 1, 0]


def test_sampler_draws_distinct_neighbours_up_to_fanout() -> None:
    n = 400
    ei = _random_graph(n, 12000, 2)  # mean degree ~60: both sampler branches run
    csr = CSR.from_edges(ei[1], ei[0], n)
    adj = Adjacency(csr, csr.degree())
    rows = torch.arange(n)
    gen = torch.Generator().manual_seed(0)
    for fanout in (1, 5, 25, 200):
        counts, cols = adj.sample(rows, fanout, gen)
        full = _lists(*adj.neighbours(rows))
        for r, got in enumerate(_lists(counts, cols)):
            assert len(got) == min(fanout, len(full[r])), (r, fanout)
            assert len(set(got)) == len(got) and set(got) <= set(full[r])


def test_sampler_is_uniform_over_neighbours() -> None:
    # one hub with 100 neighbours, 10 drawn 4000 times: each neighbour ~400 times
    n = 101
    ei = torch.stack([torch.arange(1, n), torch.zeros(n - 1, dtype=torch.long)])
    csr = CSR.from_edges(ei[1], ei[0], n)
    adj = Adjacency(csr, csr.degree())
    gen = torch.Generator().manual_seed(1)
    counts, cols = adj.sample(torch.zeros(4000, dtype=torch.long), 10, gen)  # 4000 independent draws
    assert bool((counts == 10).all())
    hits = torch.bincount(cols, minlength=n).float()
    assert hits[0] == 0 and hits[1:].min() > 300 and hits[1:].max() < 500
