"""Fixtures of the LM tests: the embedded SmolLM2 (loaded once per worker) and a tiny random model."""

from __future__ import annotations

import pytest
import torch
from tiny_lm import TINY

from tether.cloud.lm import EngineConfig, LLMEngine, Tokenizer, Transformer, load_checkpoint


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One torch thread per test process: the suite runs 2 workers on 2 cores, and 2 OpenMP threads per
    worker spin against each other (a 1-s forward pass took 30 s under load). Restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def smollm():
    """(model, tokenizer, name) of the embedded SmolLM2-135M-Instruct."""
    ckpt = load_checkpoint()
    return Transformer.from_checkpoint(ckpt), ckpt.tokenizer, ckpt.name


@pytest.fixture
def smollm_engine(smollm):
    model, tok, name = smollm
    engine = LLMEngine(model, tok, EngineConfig(threads=1), name=name)
    yield engine
    engine.stop()


@pytest.fixture
def tiny():
    """A factory of engines over one tiny random model: tiny(**EngineConfig fields) -> LLMEngine (1 thread)."""
    model = Transformer.random(TINY, seed=0)
    tok = Tokenizer.byte_level()
    engines: list[LLMEngine] = []

    def make(**config) -> LLMEngine:
        engines.append(LLMEngine(model, tok, EngineConfig(**{"threads": 1, **config}), name="tiny"))
        return engines[-1]

    yield make
    for e in engines:
        e.stop()
