"""The served model's parameters, read from a trained PyG model's state dict into plain tensors (OMEGA,
arXiv 2501.08547: the serving side evaluates the trained GNN layer by layer).

Serving needs only these tensors, so a server process (one rank of many) starts without importing
PyTorch Geometric. The names follow PyG's layers: GCNConv (lin, bias), SAGEConv (lin_l, lin_r),
GATConv (lin, att_src, att_dst, bias).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from tether.cloud.omega.config import ModelConfig

__all__ = ["ServingLayer", "ServingModel"]


@dataclass
class ServingLayer:
    weight: Tensor  # gcn: W (out, in); sage: W_l on the aggregate (out, in); gat: W (H*C, in)
    bias: Tensor | None  # (out,)
    root_weight: Tensor | None = None  # sage: W_r on the node's own row (out, in)
    att_src: Tensor | None = None  # gat: (H, C)
    att_dst: Tensor | None = None  # gat: (H, C)
    heads: int = 1
    concat: bool = True
    negative_slope: float = 0.2

    @property
    def channels(self) -> int:
        """GAT's per-head width C."""
        return int(self.weight.shape[0]) // self.heads


@dataclass
class ServingModel:
    config: ModelConfig
    layers: list[ServingLayer]

    @classmethod
    def from_state_dict(cls, config: ModelConfig, state: dict[str, Tensor]) -> ServingModel:
        """Read the GNN (models.py) state dict; `convs.<i>.<PyG name>` per layer."""
        layers = []
        for i in range(config.num_layers):

            def get(name: str, i: int = i) -> Tensor:
                key = f"convs.{i}.{name}"
                if key not in state:
                    raise KeyError(
                        f"a {config.name} checkpoint must hold {key!r}; retrain with `tether omega train`"
                    )
                return state[key].detach().float()

            if config.kind == "gcn":
                layers.append(ServingLayer(get("lin.weight"), get("bias")))
            elif config.kind == "sage":
                layers.append(
                    ServingLayer(get("lin_l.weight"), get("lin_l.bias"), root_weight=get("lin_r.weight"))
                )
            else:
                att_src, att_dst = get("att_src"), get("att_dst")  # (1, H, C)
                heads = int(att_src.shape[1])
                last = i == config.num_layers - 1
                layers.append(
                    ServingLayer(
                        get("lin.weight"),
                        get("bias"),
                        att_src=att_src[0],
                        att_dst=att_dst[0],
                        heads=heads,
                        concat=not last,
                    )
                )
        return cls(config, layers)

    @classmethod
    def from_module(cls, module) -> ServingModel:
        """From a trained GNN module (its `config` and `state_dict()`)."""
        return cls.from_state_dict(module.config, module.state_dict())
