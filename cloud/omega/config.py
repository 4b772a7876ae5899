"""Model and training configuration, shared by training (PyG, models.py) and serving (plain torch, layers.py)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["KINDS", "SAGE_AGGRS", "ModelConfig", "TrainConfig"]

KINDS = ("gcn", "sage", "gat")
SAGE_AGGRS = ("mean", "max", "sum")


@dataclass(frozen=True)
class ModelConfig:
    kind: str = "sage"  # gcn | sage | gat
    num_layers: int = 2
    in_dim: int = 64
    hidden: int = 64
    num_classes: int = 8
    heads: int = 4  # GAT's hidden layers: heads x (hidden / heads), concatenated
    aggr: str = "mean"  # GraphSAGE's neighbour aggregation: mean | max | sum
    dropout: float = 0.2

    def __post_init__(self) -> None:
        checks = [
            (self.kind in KINDS, f"kind in {KINDS}", self.kind),
            (
                2 <= self.num_layers <= 3,
                "2 <= num_layers <= 3 (1-hop recomputation is exact up to 3)",
                self.num_layers,
            ),
            (self.in_dim >= 1, "in_dim >= 1", self.in_dim),
            (self.hidden >= 1, "hidden >= 1", self.hidden),
            (self.num_classes >= 2, "num_classes >= 2", self.num_classes),
            (
                self.heads >= 1 and self.hidden % self.heads == 0,
                "heads >= 1 and hidden % heads == 0",
                self.heads,
            ),
            (self.aggr in SAGE_AGGRS, f"aggr in {SAGE_AGGRS}", self.aggr),
            (0.0 <= self.dropout < 1.0, "0 <= dropout < 1", self.dropout),
        ]
        for ok, rule, value in checks:
            if not ok:
                raise ValueError(f"ModelConfig: {rule} must hold, but got {value!r}")

    @property
    def name(self) -> str:
        """Artefact name, e.g. sage3, gat2, sage2-max."""
        suffix = f"-{self.aggr}" if self.kind == "sage" and self.aggr != "mean" else ""
        return f"{self.kind}{self.num_layers}{suffix}"

    def dims(self) -> list[int]:
        """Width of h^0 .. h^L."""
        return [self.in_dim] + [self.hidden] * (self.num_layers - 1) + [self.num_classes]

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 60
    lr: float = 0.01
    weight_decay: float = 5e-4
    eval_every: int = 5  # validation accuracy every this many epochs; the best model is kept
    seed: int = 0

    def __post_init__(self) -> None:
        for name, ok in (
            ("epochs >= 1", self.epochs >= 1),
            ("lr > 0", self.lr > 0),
            ("weight_decay >= 0", self.weight_decay >= 0),
            ("eval_every >= 1", self.eval_every >= 1),
        ):
            if not ok:
                raise ValueError(f"TrainConfig: {name} must hold, but got {self}")
