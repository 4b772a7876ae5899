"""The engine's fast paths give the same results as the plain ones: packed GEMMs, the GGUF header reader."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tether.cloud.lm import CheckpointError, SamplingParams, load_checkpoint, packed

pytestmark = pytest.mark.skipif(not packed.available(), reason="this torch build has no oneDNN")


def test_packed_linear_equals_f_linear_and_follows_weight_updates() -> None:
    gen = torch.Generator().manual_seed(0)
    w = torch.nn.Parameter(torch.randn(96, 64, generator=gen))
    x = torch.randn(5, 64, generator=gen)
    with torch.inference_mode():
        assert torch.equal(packed.linear(x, w), F.linear(x, w))  # outside `enabled`: F.linear itself
        with packed.enabled():
            assert torch.allclose(packed.linear(x, w), F.linear(x, w), rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        w.mul_(-2.0)  # an in-place update (training, a new checkpoint) must not be served stale
    with torch.inference_mode(), packed.enabled():
        assert torch.allclose(packed.linear(x, w), F.linear(x, w), rtol=1e-5, atol=1e-5)
        assert torch.allclose(packed.linear(x[:0], w), x[:0] @ w.T)  # no rows
    x.requires_grad_(True)
    with packed.enabled():
        y = packed.linear(x, w)  # autograd on: the plain path, so gradients flow
    y.sum().backward()
    assert x.grad is not None


def test_engine_with_and_without_packed_weights_generates_the_same(tiny) -> None:
    prompts = ["hello world, this is a test", "a", "the quick brown fox jumps over the lazy dog " * 2]
    params = SamplingParams(temperature=0.0, max_tokens=16, ignore_eos=True)
    fast = tiny(packed_weights=True).generate(prompts, params)
    plain = tiny(packed_weights=False).generate(prompts, params)
    assert [o.token_ids for o in fast] == [o.token_ids for o in plain]


def test_a_malformed_gguf_file_is_refused_saying_why(tmp_path) -> None:
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"NOPE" + bytes(60))
    with pytest.raises(CheckpointError, match="not a GGUF file"):
        load_checkpoint(bad)
    # The right magic and version, then 3 metadata entries that are not there.
    bad.write_bytes(
        b"GGUF" + (3).to_bytes(4, "little") + (0).to_bytes(8, "little") + (3).to_bytes(8, "little")
    )
    with pytest.raises(CheckpointError, match="cut off"):
        load_checkpoint(bad)
