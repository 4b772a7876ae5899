"""A tiny OMEGA bundle (graph, CSR index, models, stores) shared by the omega tests of one worker.

The models keep their random initialisation: every test here compares one computation with
another (exact against PyG, parallel against single-process), which needs no training.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch

from tether.cloud.omega.bundle import Bundle
from tether.cloud.omega.config import ModelConfig
from tether.cloud.omega.graphs import GraphSpec
from tether.cloud.omega.models import GNN

TINY_SPEC = GraphSpec(num_nodes=1500, avg_degree=8, community_size=40, batch_size=48, seed=3)
TINY_MODELS = [
    ModelConfig(kind="sage", num_layers=2),
    ModelConfig(kind="sage", num_layers=3),
    ModelConfig(kind="sage", num_layers=3, aggr="max"),
    ModelConfig(kind="sage", num_layers=3, aggr="sum"),
    ModelConfig(kind="gcn", num_layers=2),
    ModelConfig(kind="gcn", num_layers=3),
    ModelConfig(kind="gat", num_layers=2),
    ModelConfig(kind="gat", num_layers=3),
]


@contextmanager
def one_thread() -> Iterator[None]:
    """Tiny tensors: one intra-op thread is faster, and does not fight the other test worker for cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with one_thread():
        yield


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Bundle:
    bundle = Bundle(tmp_path_factory.mktemp("omega") / "tiny")
    with one_thread():
        bundle.make_graph(TINY_SPEC, progress=lambda _m: None)
        torch.manual_seed(0)
        for cfg in TINY_MODELS:
            bundle.save_model(GNN(cfg), math.nan, 0.0)
            bundle.precompute(cfg.name, num_partitions=3)
    return bundle
