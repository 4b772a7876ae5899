"""Serving methods as computation plans: which targets each layer computes and over which edges
(OMEGA, arXiv 2501.08547: exact and sampled baselines, precomputed embeddings, selective recomputation).

A plan lists, for layers 1..L, the targets (global ids, grouped by owning rank) and this rank's
edges into them. What a layer reads but does not compute comes from the embedding store:

- Exact: the L-hop neighbourhood of the queries, every edge; computes only what the queries need.
- Sampled: up to fanout[l] uniform neighbours per target per layer (GraphSAGE), from the queries out.
- Precomputed: only the queries, every layer; their neighbours' stored embeddings as they are.
- Selective (OMEGA): the queries plus the top `budget` share of their existing neighbours by
  score d_new / (d_new + d_org), the share of the neighbourhood a stored embedding never saw.
  Budget 0 is Precomputed; budget 1 recomputes every changed neighbour and, for L <= 3, equals
  Exact: a node two hops from the queries keeps its neighbourhood, so its h^1 is still right.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from tether.cloud.omega.comm import Comm
from tether.cloud.omega.csr import Adjacency

__all__ = [
    "DEFAULT_FANOUTS",
    "METHOD_NAMES",
    "Exact",
    "LayerPlan",
    "Method",
    "Plan",
    "Precomputed",
    "Sampled",
    "Scratch",
    "Selective",
    "build_plan",
    "method_from_name",
    "select_recompute",
]

# The paper's fan-outs, listed from the input layer to the output layer (DGL's order): the output
# layer samples the last number of neighbours per query.
DEFAULT_FANOUTS = {2: (10, 25), 3: (5, 10, 15)}


@dataclass(frozen=True)
class Exact:
    name = "exact"


@dataclass(frozen=True)
class Sampled:
    fanouts: tuple[int, ...] = ()  # () = DEFAULT_FANOUTS for the model's depth
    seed: int = 0
    name = "sampled"


@dataclass(frozen=True)
class Precomputed:
    name = "precomputed"


@dataclass(frozen=True)
class Selective:
    budget: float = 0.1  # share of the changed neighbours recomputed, highest score first
    name = "omega"

    def __post_init__(self) -> None:
        if not 0.0 <= self.budget <= 1.0:
            raise ValueError(f"recompute budget must satisfy 0 <= budget <= 1, but got {self.budget}")


Method = Exact | Sampled | Precomputed | Selective
METHOD_NAMES = ("exact", "sampled", "precomputed", "omega")


def method_from_name(name: str, *, budget: float = 0.1, seed: int = 0) -> Method:
    """'exact' | 'sampled' | 'precomputed' | 'omega' -> a method."""
    table: dict[str, Callable[[], Method]] = {
        "exact": Exact,
        "sampled": lambda: Sampled(seed=seed),
        "precomputed": Precomputed,
        "omega": lambda: Selective(budget),
    }
    if name not in table:
        raise ValueError(f"method must be one of {list(METHOD_NAMES)}, but got {name!r}")
    return table[name]()


@dataclass
class LayerPlan:
    targets: Tensor  # (n,) global ids, grouped by owning rank
    counts: Tensor  # (n,) this rank's edges into each target
    cols: Tensor  # (sum counts,) their source ids, target by target
    count: Tensor  # (n,) float: neighbour messages each target receives over all ranks


@dataclass
class Plan:
    layers: list[LayerPlan]  # layers 1..L
    candidates: int = 0  # changed existing neighbours (Selective)
    recomputed: int = 0  # of which recomputed

    @property
    def edges(self) -> int:
        return sum(int(lp.cols.numel()) for lp in self.layers)


class Scratch:
    """Reusable id-indexed buffers (sized to the id space) for set operations without sorting."""

    def __init__(self, capacity: int) -> None:
        self.pos = torch.full((capacity,), -1, dtype=torch.long)
        self.mark = torch.zeros(capacity, dtype=torch.bool)

    def fit(self, capacity: int) -> None:
        if capacity > self.pos.numel():
            self.pos = torch.full((capacity,), -1, dtype=torch.long)
            self.mark = torch.zeros(capacity, dtype=torch.bool)

    def new_ids(self, ids: Tensor, exclude: Tensor) -> Tensor:
        """Distinct values of `ids` that are not in `exclude`, ascending."""
        self.mark[ids] = True
        self.mark[exclude] = False
        out = self.mark.nonzero().view(-1)
        self.mark[out] = False
        return out


def select_recompute(adj: Adjacency, budget: float) -> tuple[Tensor, int]:
    """OMEGA's choice: (ids to recompute, number of candidates). Ties break toward lower ids."""
    cand = adj.changed()  # ascending ids
    if cand.numel() == 0 or budget <= 0.0:
        return cand[:0], int(cand.numel())
    d_new = adj.new_degree(cand).double()
    score = d_new / (d_new + adj.base_degree(cand).double())
    order = torch.argsort(-score, stable=True)
    k = min(int(cand.numel()), math.ceil(budget * cand.numel() - 1e-9))
    return cand[order[:k]], int(cand.numel())


def build_plan(
    method: Method,
    adj: Adjacency,
    queries: Tensor,
    num_layers: int,
    *,
    owner: Callable[[Tensor], Tensor],
    comm: Comm,
    scratch: Scratch,
) -> Plan:
    """The plan for `method`; `owner` maps ids to ranks. Collective when comm spans several ranks."""

    def grouped(ids: Tensor) -> Tensor:
        return ids if comm.world_size == 1 else ids[torch.argsort(owner(ids), stable=True)]

    def full(targets: Tensor) -> LayerPlan:
        counts, cols = adj.neighbours(targets)
        return LayerPlan(targets, counts, cols, adj.degree(targets).float())

    if isinstance(method, Precomputed | Selective):
        budget = method.budget if isinstance(method, Selective) else 0.0
        recompute, candidates = select_recompute(adj, budget)
        last = full(grouped(queries))
        hidden = full(grouped(torch.cat([queries, recompute]))) if recompute.numel() else last
        return Plan([hidden] * (num_layers - 1) + [last], candidates, int(recompute.numel()))

    if isinstance(method, Sampled):
        if comm.world_size > 1:
            raise ValueError(
                "sampled serving runs in one process; graph parallelism serves exact and omega plans"
            )
        fanouts = method.fanouts or DEFAULT_FANOUTS.get(num_layers, (10,) * num_layers)
        if len(fanouts) != num_layers:
            raise ValueError(f"a {num_layers}-layer model needs {num_layers} fan-outs, but got {fanouts}")
        gen = torch.Generator().manual_seed(method.seed)
    elif not isinstance(method, Exact):
        raise TypeError(f"unknown serving method {method!r}")

    layers: list[LayerPlan] = []
    targets = grouped(queries)
    for layer in range(num_layers, 0, -1):
        if isinstance(method, Sampled):
            counts, cols = adj.sample(targets, fanouts[layer - 1], gen)
            layers.append(LayerPlan(targets, counts, cols, counts.float()))
        else:
            layers.append(full(targets))
        if layer > 1:
            # the next layer down computes every source of this one; ranks hold disjoint sources
            more = comm.concat(scratch.new_ids(layers[-1].cols, targets))
            targets = grouped(torch.cat([targets, more]))
    return Plan(layers[::-1])
