"""Graphs for OMEGA's serving experiments: degree-corrected stochastic block models whose labels the
features and structure carry, user-provided graphs, and the split into an existing graph plus
batches of new nodes (OMEGA, arXiv 2501.08547, section 6: requests are held-out nodes).

The benchmark graph is built so that serving from precomputed embeddings alone is visibly wrong:
held-out nodes are a sizeable share of every community (`held_out_share`), a request carries the
held-out nodes of a few whole communities (so an existing node near a request sees a large part
of its neighbourhood arrive at once), and new nodes carry stronger label signal in their
features than existing ones (`new_feature_signal`): fresh activity is what tells their
neighbours' class apart, and an embedding stored before they arrived never saw it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = ["Graph", "GraphSpec", "ServingSplit", "generate_graph", "make_split", "split_for_serving"]


@dataclass(frozen=True)
class GraphSpec:
    """A degree-corrected SBM: communities nest in classes; degrees follow a power law."""

    num_nodes: int = 100_000
    avg_degree: float = 20.0  # mean undirected degree (each edge counts at both ends)
    num_classes: int = 8
    community_size: int = 300
    p_community: float = 0.55  # share of edges whose far end is drawn from the same community
    p_class: float = 0.15  # ... from another community of the same class; the rest: anywhere
    degree_exponent: float = 2.5  # P(theta) ~ theta^-exponent for the degree propensities
    max_degree_share: float = 0.01  # cap a propensity at this share of num_nodes (no giant hub)
    feature_dim: int = 64
    feature_signal: float = 1.0  # distance of a class centroid from 0, in units of the noise std
    new_feature_signal: float = 2.0  # ... in held-out (new) nodes' features
    held_out_share: float = 0.3  # share of every community held out as serving-time new nodes
    batch_size: int = 1024  # new nodes per request (the paper's default batch)
    seed: int = 0
    # Models train on a graph of this many nodes drawn from the same spec (seed + 1), then serve this
    # one (GNN layers are inductive); 0 = train on the served graph itself. Full-batch training cost
    # grows with the graph, serving cost with the request: a large served graph stays affordable.
    train_nodes: int = 0

    def __post_init__(self) -> None:
        checks = [
            (self.num_nodes >= 100, "num_nodes >= 100", self.num_nodes),
            (1.0 <= self.avg_degree <= self.num_nodes / 4, "1 <= avg_degree <= num_nodes/4", self.avg_degree),
            (2 <= self.num_classes <= 1000, "2 <= num_classes <= 1000", self.num_classes),
            (
                2 <= self.community_size <= self.num_nodes // self.num_classes,
                "2 <= community_size <= num_nodes // num_classes",
                self.community_size,
            ),
            (0.0 <= self.p_community <= 1.0, "0 <= p_community <= 1", self.p_community),
            (0.0 <= self.p_class <= 1.0 - self.p_community, "0 <= p_class <= 1 - p_community", self.p_class),
            (2.0 < self.degree_exponent <= 5.0, "2 < degree_exponent <= 5", self.degree_exponent),
            (0.0 < self.max_degree_share <= 1.0, "0 < max_degree_share <= 1", self.max_degree_share),
            (1 <= self.feature_dim <= 4096, "1 <= feature_dim <= 4096", self.feature_dim),
            (self.feature_signal >= 0.0, "feature_signal >= 0", self.feature_signal),
            (self.new_feature_signal >= 0.0, "new_feature_signal >= 0", self.new_feature_signal),
            (0.0 < self.held_out_share < 1.0, "0 < held_out_share < 1", self.held_out_share),
            (self.batch_size >= 1, "batch_size >= 1", self.batch_size),
        ]
        for ok, rule, value in checks:
            if not ok:
                raise ValueError(f"GraphSpec: {rule} must hold, but got {value!r}; change that field")


@dataclass
class Graph:
    """A node-classification graph: undirected (each edge stored both ways), no self loops."""

    edge_index: Tensor  # (2, E) int64, row 0 = source, row 1 = target; both directions present
    x: Tensor  # (N, F) float32 node features
    y: Tensor  # (N,) int64 labels in [0, num_classes)
    num_classes: int

    @property
    def num_nodes(self) -> int:
        return int(self.x.shape[0])

    @property
    def num_edges(self) -> int:
        """Directed edges (twice the undirected count)."""
        return int(self.edge_index.shape[1])


@dataclass
class ServingSplit:
    """The existing graph the model is served on, and the new nodes that arrive at serving time.

    Node ids: existing nodes are 0..num_base-1 in every graph here; held-out node k of the full
    graph has id num_base + k, and request r holds held-out nodes [r*B, (r+1)*B) in that order.
    """

    full: Graph  # existing + all held-out nodes: the graph the model is trained on (labels: train_mask)
    num_base: int  # existing nodes: ids 0..num_base-1
    train_mask: Tensor  # (num_base,) bool: labelled existing nodes used for training
    val_mask: Tensor  # (num_base,) bool: existing nodes for model selection
    batch_size: int

    @property
    def base(self) -> Graph:
        """The existing graph: what the precomputed embeddings are computed on."""
        keep = (self.full.edge_index < self.num_base).all(dim=0)
        return Graph(
            self.full.edge_index[:, keep],
            self.full.x[: self.num_base],
            self.full.y[: self.num_base],
            self.full.num_classes,
        )

    @property
    def num_requests(self) -> int:
        return (self.full.num_nodes - self.num_base) // self.batch_size

    def request(self, r: int):
        """Request r: its new nodes' features, their edges to existing nodes and to each other, labels."""
        from tether.cloud.omega.request import Request

        if not 0 <= r < self.num_requests:
            raise IndexError(f"request index must be in [0, {self.num_requests}), but got {r}")
        lo = self.num_base + r * self.batch_size
        hi = lo + self.batch_size
        src, dst = self.full.edge_index
        # Each undirected edge once, seen from its new end: new->existing, and new->new inside the batch
        # (kept once, from the smaller id). Edges to new nodes of other requests do not exist yet.
        in_batch = (src >= lo) & (src < hi)
        to_base = dst < self.num_base
        to_batch = (dst >= lo) & (dst < hi) & (dst > src)
        keep = in_batch & (to_base | to_batch)
        s, d = src[keep] - lo, dst[keep]
        d = torch.where(d >= self.num_base, d - lo + self.num_base, d)  # new neighbour j -> num_base + j
        return Request(
            x=self.full.x[lo:hi].clone(),
            edges=torch.stack([s, d]),
            labels=self.full.y[lo:hi].clone(),
        )


def _propensities(rng: np.random.Generator, spec: GraphSpec) -> np.ndarray:
    # Pareto with tail exponent gamma: theta = (1-u)^(-1/(gamma-1)) >= 1. A node's expected degree is
    # theta / mean(theta) * avg_degree; the cap keeps it under max_degree_share * num_nodes.
    u = rng.random(spec.num_nodes)
    theta = (1.0 - u) ** (-1.0 / (spec.degree_exponent - 1.0))
    cap = spec.max_degree_share * spec.num_nodes * theta.mean() / spec.avg_degree
    return np.minimum(theta, max(1.0, cap))


def _draw_in_ranges(rng: np.random.Generator, cum: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """For each i, a position p in [lo[i], hi[i]) drawn with probability ∝ weight (cum = cumulative weights)."""
    base = np.where(lo > 0, cum[np.maximum(lo - 1, 0)], 0.0)
    top = cum[hi - 1]
    target = base + rng.random(len(lo)) * (top - base)
    pos = np.searchsorted(cum, target, side="right")
    return np.clip(pos, lo, hi - 1)


def generate_graph(spec: GraphSpec) -> tuple[Graph, np.ndarray, np.ndarray]:
    """An SBM graph, its community of each node, and the held-out mask (held_out_share of each community).

    Nodes are laid out so that classes and, inside them, communities are contiguous ranges; an
    edge's first end is drawn ∝ its propensity, its second from the same community (p_community),
    the same class (p_class) or anywhere, also ∝ propensity: degrees follow the power law and
    labels are homophilous. Returns node ids in that layout (split_for_serving relabels).
    """
    rng = np.random.default_rng(spec.seed)
    n, c = spec.num_nodes, spec.num_classes
    per_class = n // c
    comms_per_class = max(1, per_class // spec.community_size)
    y = np.minimum(np.arange(n) // per_class, c - 1)
    # community id: class-major, contiguous; the last class takes the remainder
    within = np.arange(n) - y * per_class
    class_size = np.where(y == c - 1, n - (c - 1) * per_class, per_class)
    community = y * comms_per_class + np.minimum(within * comms_per_class // class_size, comms_per_class - 1)
    num_comms = c * comms_per_class
    comm_lo = np.searchsorted(community, np.arange(num_comms), side="left")
    comm_hi = np.searchsorted(community, np.arange(num_comms), side="right")
    class_lo = np.searchsorted(y, np.arange(c), side="left")
    class_hi = np.searchsorted(y, np.arange(c), side="right")

    theta = _propensities(rng, spec)
    cum = np.cumsum(theta)
    m = int(spec.num_nodes * spec.avg_degree / 2)
    a = _draw_in_ranges(rng, cum, np.zeros(m, dtype=np.int64), np.full(m, n, dtype=np.int64))
    kind = rng.random(m)
    lo = np.zeros(m, dtype=np.int64)
    hi = np.full(m, n, dtype=np.int64)
    in_comm = kind < spec.p_community
    in_class = (~in_comm) & (kind < spec.p_community + spec.p_class)
    lo[in_comm], hi[in_comm] = comm_lo[community[a[in_comm]]], comm_hi[community[a[in_comm]]]
    lo[in_class], hi[in_class] = class_lo[y[a[in_class]]], class_hi[y[a[in_class]]]
    b = _draw_in_ranges(rng, cum, lo, hi)

    keep = a != b
    a, b = a[keep], b[keep]
    key = np.unique(np.concatenate([a * n + b, b * n + a]))  # both directions, duplicates merged
    edge_index = torch.from_numpy(np.stack([key // n, key % n])).long()

    # Features: a random unit centroid per class, scaled by the signal, plus unit Gaussian noise.
    centroids = rng.standard_normal((c, spec.feature_dim))
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    held_out = np.zeros(n, dtype=bool)
    for k in range(num_comms):
        ids = np.arange(comm_lo[k], comm_hi[k])
        pick = rng.choice(ids, size=int(round(spec.held_out_share * len(ids))), replace=False)
        held_out[pick] = True
    signal = np.where(held_out, spec.new_feature_signal, spec.feature_signal)
    x = centroids[y] * signal[:, None] + rng.standard_normal((n, spec.feature_dim))
    graph = Graph(edge_index, torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y).long(), c)
    return graph, community, held_out


def split_for_serving(
    graph: Graph,
    held_out: np.ndarray,
    *,
    community: np.ndarray | None = None,
    batch_size: int = 1024,
    train_share: float = 0.5,
    seed: int = 0,
) -> ServingSplit:
    """Relabel so that existing nodes come first and held-out nodes follow, grouped by community.

    Grouping by community makes a request the arrival of (parts of) a few communities, the case in
    which new nodes change their neighbours' embeddings most. Without `community` the held-out nodes
    keep their order. Held-out nodes beyond the last whole batch join the existing graph.
    """
    if not 0.0 < train_share < 1.0:
        raise ValueError(f"0 < train_share < 1 must hold, but got {train_share}")
    n = graph.num_nodes
    held = np.flatnonzero(held_out)
    if community is not None:
        held = held[np.argsort(community[held], kind="stable")]
    whole = (len(held) // batch_size) * batch_size
    if whole == 0:
        raise ValueError(
            f"a request needs batch_size={batch_size} held-out nodes, but only {len(held)} are held out; "
            "lower batch_size or raise held_out_share"
        )
    held = held[:whole]
    is_held = np.zeros(n, dtype=bool)
    is_held[held] = True
    base = np.flatnonzero(~is_held)
    order = np.concatenate([base, held])  # new id -> old id
    relabel = np.empty(n, dtype=np.int64)
    relabel[order] = np.arange(n)
    ei = torch.from_numpy(relabel)[graph.edge_index]
    perm = torch.from_numpy(order)
    full = Graph(ei, graph.x[perm].contiguous(), graph.y[perm].contiguous(), graph.num_classes)
    rng = np.random.default_rng(seed + 1)
    nb = len(base)
    train = torch.from_numpy(rng.random(nb) < train_share)
    return ServingSplit(full=full, num_base=nb, train_mask=train, val_mask=~train, batch_size=batch_size)


def make_split(spec: GraphSpec) -> ServingSplit:
    """Generate `spec`'s graph and split it for serving (requests grouped by community)."""
    graph, community, held = generate_graph(spec)
    return split_for_serving(graph, held, community=community, batch_size=spec.batch_size, seed=spec.seed)
