"""GCN, GraphSAGE and GAT node classifiers built from PyTorch Geometric layers, the models OMEGA serves
(Kipf & Welling 2017; Hamilton et al. 2017; Velickovic et al. 2018; OMEGA, arXiv 2501.08547, section 6).

Training runs PyG's own layers over the whole graph; serving (kernel.py) reads the same layers'
parameters and evaluates them block by block, so that aggregation can be split across ranks.

GCN here normalises by the target's degree, D^-1 (A + I) (DGL's GraphConv norm="right", the
GCN aggregator of GraphSAGE), not the symmetric D^-1/2 (A + I) D^-1/2: with the symmetric form a
new edge changes its end's degree and so the stored embeddings of that end's neighbours too, and
no recomputation of the 1-hop neighbourhood could ever be exact.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import GATConv, GCNConv, SAGEConv

from tether.cloud.omega.config import ModelConfig
from tether.cloud.omega.csr import sparse_rows

__all__ = ["GNN", "training_adjacency"]


class GNN(nn.Module):
    """L message-passing layers with ReLU between them; the last layer outputs class logits."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        dims = config.dims()
        convs = []
        for i in range(config.num_layers):
            d_in, d_out, last = dims[i], dims[i + 1], i == config.num_layers - 1
            if config.kind == "gcn":
                # weights come from training_adjacency (D^-1 (A + I)); PyG must not renormalise
                convs.append(GCNConv(d_in, d_out, normalize=False, add_self_loops=False))
            elif config.kind == "sage":
                convs.append(SAGEConv(d_in, d_out, aggr=config.aggr))
            else:
                heads = 1 if last else config.heads
                convs.append(GATConv(d_in, d_out // heads, heads=heads, concat=not last, add_self_loops=True))
        self.convs = nn.ModuleList(convs)

    def layer(self, i: int, h: Tensor, adj: Tensor, edge_index: Tensor) -> Tensor:
        """Layer i over the whole graph (PyG's own forward): the training and reference path."""
        conv = self.convs[i]
        out = conv(h, edge_index) if self.config.kind == "gat" else conv(h, adj)
        return out if i == len(self.convs) - 1 else F.relu(out)

    def forward(self, x: Tensor, adj: Tensor, edge_index: Tensor) -> Tensor:
        """(N, F) features -> (N, C) logits; `adj`, `edge_index` from training_adjacency."""
        h = x
        for i in range(len(self.convs)):
            h = F.dropout(h, self.config.dropout, self.training)
            h = self.layer(i, h, adj, edge_index)
        return h


def training_adjacency(edge_index: Tensor, num_nodes: int, kind: str) -> Tensor:
    """The transposed adjacency PyG's layers take for whole-graph passes, as a torch CSR tensor.

    Rows are targets. GCN gets D^-1 (A + I) (self loops, weight 1/(deg+1)); SAGE gets A (ones).
    """
    src, dst = edge_index[0].long(), edge_index[1].long()
    if kind == "gcn":
        loop = torch.arange(num_nodes)
        src, dst = torch.cat([src, loop]), torch.cat([dst, loop])
        deg = torch.bincount(dst, minlength=num_nodes).float()
        value = 1.0 / deg[dst]
    else:
        value = torch.ones(src.numel())
    order = torch.argsort(dst * num_nodes + src)
    counts = torch.bincount(dst, minlength=num_nodes)
    crow = torch.zeros(num_nodes + 1, dtype=torch.long)
    torch.cumsum(counts, 0, out=crow[1:])
    return sparse_rows(crow, src[order], value[order], (num_nodes, num_nodes))
