"""A serving request: a batch of new nodes with their features and their edges (OMEGA, arXiv 2501.08547, §2).

Ids in a request live in one space: existing nodes keep their ids 0..N-1, and new node j of the
request is N + j. `edges[0]` names a new node by its index j in the batch, `edges[1]` the node it
connects to (existing id, or N + k for another new node of the same request); each undirected
edge is given once and the server adds the reverse direction.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Request", "RequestError", "validate_request"]


class RequestError(ValueError):
    """A request breaks a rule of the serving graph; the message names the rule, the value and the fix.

    Recoverable: the server is unchanged, the caller fixes the request and sends it again.
    """


@dataclass
class Request:
    x: Tensor  # (B, F) float32 features of the new nodes
    edges: Tensor  # (2, E) int64: (new node index j in [0, B), neighbour id in [0, N + B))
    labels: Tensor | None = None  # (B,) int64, only for evaluation

    @property
    def size(self) -> int:
        return int(self.x.shape[0])


def validate_request(request: Request, *, num_nodes: int, feature_dim: int) -> None:
    """Raise RequestError unless `request` fits a graph of `num_nodes` existing nodes and `feature_dim` features."""
    x, edges = request.x, request.edges
    if not isinstance(x, Tensor) or x.dim() != 2:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise RequestError(f"request features must be a 2-D tensor (new nodes, features), but got {shape}")
    b = int(x.shape[0])
    if b == 0:
        raise RequestError("a request must carry at least one new node, but got 0 rows of features")
    if int(x.shape[1]) != feature_dim:
        raise RequestError(
            f"request features must have width {feature_dim} (the graph's feature width), but got "
            f"{int(x.shape[1])}; send one row of {feature_dim} features per new node"
        )
    if not torch.is_floating_point(x) or not bool(torch.isfinite(x).all()):
        raise RequestError("request features must be finite floating-point numbers; replace NaN/inf values")
    if not isinstance(edges, Tensor) or edges.dim() != 2 or int(edges.shape[0]) != 2:
        shape = tuple(edges.shape) if isinstance(edges, Tensor) else type(edges).__name__
        raise RequestError(f"request edges must be a (2, E) integer tensor, but got shape {shape}")
    if torch.is_floating_point(edges):
        raise RequestError(f"request edges must hold integer node ids, but got dtype {edges.dtype}")
    if edges.shape[1] == 0:
        return
    new, nbr = edges[0], edges[1]
    bad_new = (new < 0) | (new >= b)
    if bool(bad_new.any()):
        i = int(bad_new.nonzero()[0, 0])
        raise RequestError(
            f"request edge {i} starts at new node {int(new[i])}, but a request of {b} new nodes has indices "
            f"0..{b - 1}; edges[0] must index the batch's own rows"
        )
    bad_nbr = (nbr < 0) | (nbr >= num_nodes + b)
    if bool(bad_nbr.any()):
        i = int(bad_nbr.nonzero()[0, 0])
        raise RequestError(
            f"request edge {i} names unknown node id {int(nbr[i])}: the graph has existing nodes "
            f"0..{num_nodes - 1} and this request's new nodes {num_nodes}..{num_nodes + b - 1}; "
            "connect new nodes only to existing ids or to num_nodes + j for new node j"
        )
    self_loop = nbr == new + num_nodes
    if bool(self_loop.any()):
        i = int(self_loop.nonzero()[0, 0])
        raise RequestError(
            f"request edge {i} joins new node {int(new[i])} to itself (id {int(nbr[i])}); drop self loops, "
            "the models add their own"
        )
