"""Full-batch node-classification training of the served models with PyG's layers (Kipf & Welling 2017;
OMEGA, arXiv 2501.08547, section 6: models are trained offline, then served).

The model trains on the whole graph (existing and held-out nodes, transductively) with labels of
existing training nodes only; held-out nodes' labels are never seen, they are the requests' answers.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from tether.cloud.omega.config import ModelConfig, TrainConfig
from tether.cloud.omega.graphs import ServingSplit
from tether.cloud.omega.models import GNN, training_adjacency

__all__ = ["TrainConfig", "TrainResult", "train_model"]


@dataclass
class TrainResult:
    model: GNN
    val_acc: float  # accuracy on existing validation nodes, whole-graph inference
    epochs: int
    seconds: float


def train_model(
    config: ModelConfig,
    split: ServingSplit,
    train: TrainConfig = TrainConfig(),
    progress: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train `config` on `split.full`; reports an estimate of the remaining time after the first epoch."""
    torch.manual_seed(train.seed)
    g = split.full
    model = GNN(config)
    adj = training_adjacency(g.edge_index, g.num_nodes, config.kind) if config.kind != "gat" else None
    train_idx = split.train_mask.nonzero().view(-1)
    val_idx = split.val_mask.nonzero().view(-1)
    opt = torch.optim.Adam(model.parameters(), lr=train.lr, weight_decay=train.weight_decay)
    best_acc, best_state = -1.0, None
    t0 = time.perf_counter()
    for epoch in range(1, train.epochs + 1):
        model.train()
        opt.zero_grad()
        out = model(g.x, adj, g.edge_index)
        loss = F.cross_entropy(out[train_idx], g.y[train_idx])
        loss.backward()
        opt.step()
        if epoch == 1:
            t1 = time.perf_counter()  # the first epoch pays one-off set-up: estimate from the second
        if progress is not None and (epoch == 2 or train.epochs == 1):
            per = time.perf_counter() - (t1 if epoch == 2 else t0)
            left = per * (train.epochs - epoch) * 1.15  # + evaluation passes
            progress(f"training {config.name}: ~{left:.0f} s left ({train.epochs} epochs, {per:.2f} s each)")
        if epoch % train.eval_every == 0 or epoch == train.epochs:
            model.eval()
            with torch.no_grad():
                pred = model(g.x, adj, g.edge_index)[val_idx].argmax(1)
            acc = float((pred == g.y[val_idx]).float().mean())
            if acc > best_acc:
                best_acc, best_state = acc, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    model.eval()
    return TrainResult(model, best_acc, train.epochs, time.perf_counter() - t0)
