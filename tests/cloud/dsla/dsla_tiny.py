"""The DSLA tests' tiny model: a random Llama (grouped-query attention) with a DSLA kind on every layer,
and a chained distillation sized for it. A module of its own (not conftest) so that tests import it by
a name no other test folder uses."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from tiny_lm import TINY as TINY_LM

from tether.cloud.dsla.chain import attach
from tether.cloud.dsla.distill import DistillConfig
from tether.cloud.lm import Transformer

# The LM tests' tiny model with a longer context.
TINY = replace(TINY_LM, context_len=1024)


# Chained distillation at the tiny scale: a few steps per layer, on random byte tokens.
TINY_DISTILL = DistillConfig(
    batch_size=2,
    seq_len=32,
    bank_batches=2,
    local_steps=6,
    e2e_steps=2,
    e2e_batch_size=1,
    budget_min=10,
    max_layers=2,
    lr_gates=1e-2,
    lr_proj=1e-3,
)


def random_tokens(seed: int, n: int = 4000) -> np.ndarray:
    """n random byte-level token ids (int32)."""
    return np.random.default_rng(seed).integers(3, 259, n).astype(np.int32)


def tiny_model(seed: int = 0, n_states: int = 2) -> Transformer:
    """The tiny model with a DSLA kind (at its initialisation, gates randomised) on every layer."""
    model = Transformer.random(TINY, seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    for impl in attach(model, n_states=n_states):
        with torch.no_grad():  # gates away from their init, so the two states and the heads differ
            impl.bg.copy_(torch.randn(impl.bg.shape, generator=gen))
            impl.mix.copy_(torch.randn(impl.mix.shape, generator=gen))
    return model
