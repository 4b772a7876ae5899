"""DSLA-Serve: dual-state linear attention, chained distillation, online layer conversion (arXiv 2506.09316).

    tether dsla distill                 # the conversion chain of the embedded SmolLM2 (resumable)
    tether dsla distill --device cuda --precision tf32 --seq-len 1024 --batch-size 8 ...  # larger, on a GPU
    tether dsla tokens --out t.npz      # the distillation tokens in one file (`distill --tokens t.npz`)
    tether bench dsla                   # speed and quality of its prefixes against the original
    tether dsla serve                   # node /cloud/dsla: `policy`, `converted_layers`, telemetry

Modules: `gla` (the gated linear-attention forms), `layer` (the DSLA attention kind), `sensitivity`
(the conversion order), `chain` (checkpoints), `distill`, `policy` (the load policy), `serve`
(conversion and folding in a running engine), `service` (the bus node), `corpus`, `cli`.
"""

from tether.cloud.dsla.chain import Chain, ChainError, ChainStep, attach
from tether.cloud.dsla.distill import DistillConfig, Distiller
from tether.cloud.dsla.layer import DSLAttention, kind_name
from tether.cloud.dsla.policy import ConversionPolicy, Load, PolicyConfig
from tether.cloud.dsla.sensitivity import last_row_entropy, sensitivity_order
from tether.cloud.dsla.serve import POLICIES, DSLAServe, LevelError

__all__ = [
    "POLICIES",
    "Chain",
    "ChainError",
    "ChainStep",
    "ConversionPolicy",
    "DSLAServe",
    "DSLAttention",
    "DistillConfig",
    "Distiller",
    "LevelError",
    "Load",
    "PolicyConfig",
    "attach",
    "kind_name",
    "last_row_entropy",
    "sensitivity_order",
]
