"""Fixtures of the DSLA tests: a tiny random Llama (grouped-query attention) with a DSLA kind on every layer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tether.cloud.dsla.chain import attach
from tether.cloud.dsla.distill import DistillConfig
from tether.cloud.lm import CacheConfig, EngineConfig, LLMEngine, ModelConfig, Tokenizer, Transformer

torch.set_num_threads(
    1
)  # tiny tensors: a second thread only adds OpenMP barriers (pytest -n 2 runs two workers)

# 3 layers, 4 query heads on 2 KV heads, the byte-level tokenizer's vocabulary.
TINY = ModelConfig(
    vocab_size=259,
    n_layer=3,
    n_embd=64,
    n_head=4,
    n_kv_head=2,
    head_dim=16,
    ffn_dim=128,
    context_len=1024,
    tie_embeddings=False,
)


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


@pytest.fixture
def engines():
    """A factory of engines on one model: engines(model, **EngineConfig fields) -> LLMEngine; all stopped after."""
    made: list[LLMEngine] = []

    def make(model: Transformer, **config) -> LLMEngine:
        cache = CacheConfig(prefix_caching=False, kv_cache_bytes=64 << 20, side_cache_bytes=16 << 20)
        made.append(
            LLMEngine(model, Tokenizer.byte_level(), EngineConfig(**{"threads": 1, "cache": cache, **config}))
        )
        return made[-1]

    yield make
    for e in made:
        e.stop()
