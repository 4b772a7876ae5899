"""OMEGA: low-latency GNN serving with selective recomputation of precomputed embeddings and
computation-graph parallelism (Lee et al., arXiv 2501.08547), on PyTorch Geometric models.

Offline, `tether omega train` generates (or loads) a graph and trains GCN, GraphSAGE and GAT;
`tether omega precompute` writes every node's layer outputs to a memory-mapped, partitioned store.
Online, `OmegaServer` serves batches of new nodes exactly, by neighbour sampling, from stored
embeddings only, or with OMEGA's selective recomputation; `ParallelServer` spreads the same
computation over torch.distributed ranks.
"""

from tether.cloud.omega.config import ModelConfig
from tether.cloud.omega.graphs import Graph, GraphSpec, ServingSplit, generate_graph, split_for_serving
from tether.cloud.omega.layers import ServingModel
from tether.cloud.omega.parallel import ParallelServer
from tether.cloud.omega.plan import Exact, Method, Precomputed, Sampled, Selective, method_from_name
from tether.cloud.omega.request import Request, RequestError
from tether.cloud.omega.server import GraphIndex, OmegaServer, RequestStats
from tether.cloud.omega.store import EmbeddingStore, StoreError

__all__ = [
    "GNN",
    "EmbeddingStore",
    "Exact",
    "Graph",
    "GraphIndex",
    "GraphSpec",
    "Method",
    "ModelConfig",
    "OmegaServer",
    "ParallelServer",
    "Precomputed",
    "Request",
    "RequestError",
    "RequestStats",
    "Sampled",
    "Selective",
    "ServingModel",
    "ServingSplit",
    "StoreError",
    "generate_graph",
    "method_from_name",
    "split_for_serving",
]


def __getattr__(name: str):
    # GNN (the PyG module) loads on first use: serving processes never import PyTorch Geometric
    if name == "GNN":
        from tether.cloud.omega.models import GNN

        return GNN
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
