"""Named graph sizes and the served model set, shared by `tether omega` and `tether bench omega`
(OMEGA, arXiv 2501.08547, section 6: GCN, GraphSAGE and GAT at 2 and 3 layers).

`bench` is the benchmark's graph (how it is built, and why precomputed-only serving loses there, is
in graphs.py); `quick` trains in seconds and checks the pipeline, not the figures.
"""

from __future__ import annotations

import re

from tether.cloud.omega.config import ModelConfig, TrainConfig
from tether.cloud.omega.graphs import GraphSpec

__all__ = ["GRAPHS", "MODELS", "model_config", "train_config"]

GRAPHS: dict[str, GraphSpec] = {
    # 300k nodes, 2.4M undirected edges; 30% of every community held out: 87 requests of 1024 new
    # nodes, and an existing graph of 211k nodes and 1.2M undirected edges. The models train on a
    # 20k-node graph from the same generator: training cost stays flat while exact serving, which
    # reads the 3-hop neighbourhood, grows with the served graph (OMEGA's point).
    "bench": GraphSpec(
        num_nodes=300_000,
        avg_degree=18.0,
        p_community=0.6,
        p_class=0.1,
        feature_signal=0.5,
        new_feature_signal=1.5,
        held_out_share=0.3,
        batch_size=1024,
        train_nodes=20_000,
    ),
    "quick": GraphSpec(
        num_nodes=4000,
        avg_degree=10.0,
        community_size=50,
        p_community=0.6,
        p_class=0.1,
        feature_signal=0.5,
        new_feature_signal=1.5,
        batch_size=128,
    ),
}

MODELS = ("gcn2", "gcn3", "sage2", "sage3", "gat2", "gat3")

_NAME = re.compile(r"(gcn|sage|gat)([23])(?:-(mean|max|sum))?")


def model_config(name: str, *, in_dim: int, num_classes: int) -> ModelConfig:
    """'sage3', 'gat2', 'sage2-max', ... -> a ModelConfig for a graph of that feature width and class count."""
    m = _NAME.fullmatch(name)
    if m is None:
        raise ValueError(
            f"a model name is <gcn|sage|gat><2|3>[-mean|-max|-sum] (e.g. sage3, gat2, sage2-max), but got {name!r}"
        )
    kind, layers, aggr = m.group(1), int(m.group(2)), m.group(3) or "mean"
    if aggr != "mean" and kind != "sage":
        raise ValueError(f"only GraphSAGE takes an aggregation suffix, but got {name!r}")
    return ModelConfig(kind=kind, num_layers=layers, in_dim=in_dim, num_classes=num_classes, aggr=aggr)


def train_config(preset: str, config: ModelConfig) -> TrainConfig:
    """Epochs per size: GAT's edge-wise attention costs several times a GCN epoch, so it trains fewer."""
    if preset == "quick":
        return TrainConfig(epochs=15, eval_every=5)
    epochs = 20 if config.kind == "gat" else 30
    return TrainConfig(epochs=epochs, lr=0.01, eval_every=5)
