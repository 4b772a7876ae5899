"""Fixtures of the DSLA tests (the tiny model itself is in dsla_tiny.py)."""

from __future__ import annotations

import pytest
import torch

from tether.cloud.lm import CacheConfig, EngineConfig, LLMEngine, Tokenizer, Transformer

# Tiny tensors: a second thread only adds OpenMP barriers (pytest -n 2 runs two workers).
torch.set_num_threads(1)


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
