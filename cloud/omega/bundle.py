"""Where OMEGA's artefacts live and how each is made: the graph and its split, the CSR index, the
trained models and their embedding stores (OMEGA, arXiv 2501.08547: offline training and precompute).

Layout under `settings().artefact_dir("omega") / <graph name>`:
  graph.pt            the full graph, the existing/held-out split, the spec it was made from
  index/              CSR index of the existing graph (csr_rowptr.npy, csr_col.npy)
  models/<name>.pt    a trained model: config, weights, validation accuracy
  stores/<name>/      the model's precomputed embeddings (store.py)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from tether.cloud.omega.config import ModelConfig, TrainConfig
from tether.cloud.omega.graphs import Graph, GraphSpec, ServingSplit, make_split, split_for_serving
from tether.cloud.omega.layers import ServingModel
from tether.cloud.omega.server import GraphIndex, OmegaServer, whole_graph_layers
from tether.cloud.omega.store import EmbeddingStore, write_store

if TYPE_CHECKING:  # PyG loads only where a model is trained: serving processes start without it
    from tether.cloud.omega.models import GNN

__all__ = ["Bundle", "default_root"]

Progress = Callable[[str], None]


def default_root(graph_name: str) -> Path:
    from tether.settings import settings

    return settings().artefact_dir("omega") / graph_name


class Bundle:
    """The artefacts of one graph; every getter names the command that makes what is missing."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.name = self.root.name

    graph_file = property(lambda self: self.root / "graph.pt")
    index_dir = property(lambda self: self.root / "index")

    def model_path(self, model: str) -> Path:
        return self.root / "models" / f"{model}.pt"

    def store_path(self, model: str) -> Path:
        return self.root / "stores" / model

    def has_graph(self) -> bool:
        return self.graph_file.is_file() and (self.index_dir / "csr_col.npy").is_file()

    def has_model(self, model: str) -> bool:
        return self.model_path(model).is_file()

    def has_store(self, model: str) -> bool:
        return (self.store_path(model) / "meta.json").is_file()

    # -- graph -------------------------------------------------------------------------------
    def save_split(self, split: ServingSplit, info: dict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        g = split.full
        doc = {
            "edge_index": g.edge_index,
            "x": g.x,
            "y": g.y,
            "num_classes": g.num_classes,
            "num_base": split.num_base,
            "train_mask": split.train_mask,
            "val_mask": split.val_mask,
            "batch_size": split.batch_size,
            "info": info,
        }
        torch.save(doc, self.graph_file)
        base = split.base
        GraphIndex.from_edges(base.edge_index, base.num_nodes, int(base.x.shape[1])).save(self.index_dir)

    def load_split(self) -> ServingSplit:
        if not self.graph_file.is_file():
            raise FileNotFoundError(
                f"no graph at {self.graph_file}; run `tether omega train --graph {self.name}`"
            )
        d = torch.load(self.graph_file, weights_only=True)
        g = Graph(d["edge_index"], d["x"], d["y"], int(d["num_classes"]))
        return ServingSplit(g, int(d["num_base"]), d["train_mask"], d["val_mask"], int(d["batch_size"]))

    def info(self) -> dict:
        return torch.load(self.graph_file, weights_only=True)["info"]

    def make_graph(self, spec: GraphSpec, progress: Progress = print) -> ServingSplit:
        progress(f"generating graph {self.name}: {spec.num_nodes} nodes, mean degree {spec.avg_degree}")
        split = make_split(spec)
        self.save_split(split, {"spec": asdict(spec), "source": "generated"})
        return split

    def training_split(self) -> ServingSplit:
        """The graph the models train on: the served one, or the spec's smaller sample (train_nodes)."""
        info = self.info()
        spec = info.get("spec")
        if spec and spec.get("train_nodes"):
            sample = replace(
                GraphSpec(**spec), num_nodes=spec["train_nodes"], seed=spec["seed"] + 1, train_nodes=0
            )
            return make_split(sample)
        return self.load_split()

    def import_graph(
        self, graph: Graph, *, held_out_share: float, batch_size: int, seed: int = 0
    ) -> ServingSplit:
        """A user's graph: a random `held_out_share` of nodes becomes serving-time new nodes."""
        rng = np.random.default_rng(seed)
        held = rng.random(graph.num_nodes) < held_out_share
        split = split_for_serving(graph, held, batch_size=batch_size, seed=seed)
        self.save_split(split, {"source": "user", "held_out_share": held_out_share})
        return split

    def index(self, *, rank: int = 0, world_size: int = 1) -> GraphIndex:
        return GraphIndex.load(self.index_dir, rank=rank, world_size=world_size)

    # -- models and stores -------------------------------------------------------------------
    def save_model(self, model: GNN, val_acc: float, seconds: float) -> None:
        path = self.model_path(model.config.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "config": model.config.to_dict(),
            "state": model.state_dict(),
            "val_acc": val_acc,
            "seconds": seconds,
        }
        torch.save(doc, path)

    def _checkpoint(self, model: str) -> dict:
        path = self.model_path(model)
        if not path.is_file():
            raise FileNotFoundError(
                f"no model {model!r} at {path}; run `tether omega train --graph {self.name}`"
            )
        return torch.load(path, weights_only=True)

    def load_model(self, model: str) -> GNN:
        """The trained PyG module (training, reference checks)."""
        from tether.cloud.omega.models import GNN

        doc = self._checkpoint(model)
        gnn = GNN(ModelConfig(**doc["config"]))
        gnn.load_state_dict(doc["state"])
        return gnn.eval()

    def load_serving(self, model: str) -> ServingModel:
        """The model's parameters for serving, without importing PyG."""
        doc = self._checkpoint(model)
        return ServingModel.from_state_dict(ModelConfig(**doc["config"]), doc["state"])

    def model_meta(self, model: str) -> dict:
        doc = self._checkpoint(model)
        return {"val_acc": doc["val_acc"], "seconds": doc["seconds"], "config": doc["config"]}

    def precompute(self, model: str, *, num_partitions: int = 4) -> Path:
        """Run the model over the existing graph; write h^0..h^(L-1) as a partitioned store."""
        gnn = self.load_serving(model)
        split = self.load_split()
        base = split.base
        layers = whole_graph_layers(gnn, self.index(), base.x)
        out = self.store_path(model)
        write_store(
            out,
            layers[: gnn.config.num_layers],
            num_partitions=num_partitions,
            model_name=model,
            graph_name=self.name,
        )
        return out

    def store(self, model: str) -> EmbeddingStore:
        return EmbeddingStore.open(self.store_path(model))

    def server(self, model: str) -> OmegaServer:
        return OmegaServer(self.load_serving(model), self.index(), self.store(model))

    def prepare(
        self,
        spec: GraphSpec | None,
        models: Iterable[ModelConfig],
        train: TrainConfig | Callable[[ModelConfig], TrainConfig] = TrainConfig(),
        progress: Progress = print,
        *,
        num_partitions: int = 4,
    ) -> None:
        """Make whatever is missing: the graph (from `spec`), each model, each store.

        `train`: one TrainConfig for every model, or a function giving each model's.
        """
        from tether.cloud.omega.train import train_model

        if not self.has_graph():
            if spec is None:
                raise FileNotFoundError(
                    f"no graph in {self.root}; import one with `tether omega train --edges ...`"
                )
            split = self.make_graph(spec, progress)
        else:
            split = None
        for cfg in models:
            if not self.has_model(cfg.name):
                split = split or self.load_split()
                tc = train(cfg) if callable(train) else train
                res = train_model(cfg, split, tc, progress)
                self.save_model(res.model, res.val_acc, res.seconds)
                progress(f"trained {cfg.name}: validation accuracy {res.val_acc:.3f} in {res.seconds:.0f} s")
            if not self.has_store(cfg.name):
                self.precompute(cfg.name, num_partitions=num_partitions)
                progress(f"precomputed embeddings of {cfg.name} into {self.store_path(cfg.name)}")
