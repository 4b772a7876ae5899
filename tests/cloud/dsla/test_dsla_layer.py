"""The DSLA layer: its three forms agree (chunked, recurrent, naive), its initialisation, GQA by repeating k/v."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from dsla_tiny import TINY, tiny_model

from tether.cloud.dsla import gla
from tether.cloud.dsla.layer import DSLAttention, kind_name
from tether.cloud.lm import Transformer
from tether.cloud.lm.attention import rope_tables


def _tables(model: Transformer, T: int, start: int = 0):
    return rope_tables(torch.arange(start, start + T), model.inv_freq)


def _recurrent(layer: DSLAttention, x: torch.Tensor, cos, sin) -> torch.Tensor:
    """Decode form: one token at a time through `gla.step`, the state carried."""
    q, k, v, log_g = layer._project(x, cos, sin)
    S = torch.zeros(x.shape[0], q.shape[2], layer.head_dim, layer.head_dim)
    out = torch.stack([gla.step(q[:, t], k[:, t], v[:, t], log_g[:, t], S) for t in range(x.shape[1])], dim=1)
    return F.linear(layer._mix(out), layer.wo)


@pytest.mark.parametrize("n_states", [1, 2])
def test_chunked_recurrent_and_naive_forms_agree(n_states: int) -> None:
    model = tiny_model(n_states=n_states)
    layer = model.slots[1].impl("dsla" if n_states == 2 else "gla")
    x = torch.randn(2, 45, TINY.n_embd)  # 45: not a multiple of the chunk (16)
    cos, sin = _tables(model, 45)
    with torch.no_grad():
        chunked = layer.forward_dense(x, cos, sin)
        naive, S_naive = layer.forward_naive(x, cos, sin)
        recurrent = _recurrent(layer, x, cos, sin)
        q, k, v, log_g = layer._project(x, cos, sin)
        _, S_chunked = gla.chunked(q, k, v, log_g)
        # A prompt in two pieces, the state carried between them, is the prompt in one.
        o1, S1 = gla.chunked(q[:, :20], k[:, :20], v[:, :20], log_g[:, :20])
        o2, S2 = gla.chunked(q[:, 20:], k[:, 20:], v[:, 20:], log_g[:, 20:], S1)
        o_all, _ = gla.chunked(q, k, v, log_g)
    scale = naive.abs().max()
    assert scale > 0.1  # a non-trivial output
    torch.testing.assert_close(chunked / scale, naive / scale, atol=2e-5, rtol=0)
    torch.testing.assert_close(recurrent / scale, naive / scale, atol=2e-5, rtol=0)
    torch.testing.assert_close(S_chunked, S_naive, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(torch.cat([o1, o2], 1), o_all, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(S2, S_chunked, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("T", [45, 16 * 16 * 2 + 37])  # one group of chunks, and several plus a ragged end
def test_training_scan_gradients_equal_the_recurrences(T: int) -> None:
    """With gradients on, `chunked` carries the state across groups of chunks (`_scan_grouped`); its
    output, final state and every input's gradient must equal the token-by-token recurrence's."""
    gen = torch.Generator().manual_seed(T)
    B, H, d = 2, 3, 8
    q, k, v = (torch.randn(B, T, H, d, generator=gen, dtype=torch.float64) for _ in range(3))
    z = 3 * torch.randn(B, T, H, d, generator=gen, dtype=torch.float64)
    S0 = torch.randn(B, H, d, d, generator=gen, dtype=torch.float64)
    results = []
    for form in ("chunked", "naive"):
        leaves = [t.clone().requires_grad_(True) for t in (q, k, v, z, S0)]
        qq, kk, vv, zz, ss = leaves
        o, S = getattr(gla, form)(qq, kk, vv, gla.gate_log(zz), ss)
        (o.square().sum() + (S * S0).sum()).backward()
        results.append([o.detach(), S.detach()] + [t.grad for t in leaves])
    for got, want in zip(*results, strict=True):
        assert got.abs().max() > 0
        torch.testing.assert_close(got, want, atol=1e-8, rtol=1e-8)


def test_gates_at_their_floor_stay_finite_and_exact() -> None:
    """log g = -50 on every token: the intra-chunk factorisation must not overflow."""
    B, T, H, d = 1, 40, 2, 8
    q, k, v = torch.randn(B, T, H, d), torch.randn(B, T, H, d), torch.randn(B, T, H, d)
    for z in (-0.1, -50.0, -5000.0):
        log_g = gla.gate_log(torch.full((B, T, H, d), z) + torch.rand(B, T, H, d))
        o, S = gla.chunked(q, k, v, log_g)
        o_ref, S_ref = gla.naive(q, k, v, log_g)
        assert torch.isfinite(o).all() and torch.isfinite(S).all()
        torch.testing.assert_close(o, o_ref, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(gla.fold(k, v, log_g), S_ref, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="chunk"):
        gla.chunked(q, k, v, log_g, chunk=32)


def test_initialisation_follows_the_paper_and_k_v_stay_the_teachers() -> None:
    model = Transformer.random(TINY, seed=3)
    teacher = model.slots[0].impl("softmax")
    layer = DSLAttention(TINY, teacher)
    hq = TINY.n_head * TINY.head_dim
    torch.testing.assert_close(layer.wg[:hq], torch.eye(hq, TINY.n_embd))  # W_1 = identity
    assert not torch.equal(layer.wg[hq:], torch.zeros_like(layer.wg[hq:]))  # W_2: default init
    assert torch.equal(layer.bg, torch.zeros_like(layer.bg))
    torch.testing.assert_close(layer.mix.softmax(0), torch.tensor([0.5, 0.5]))
    wq, wk, wv, wo = teacher.projections()
    torch.testing.assert_close(layer.wq, wq)
    torch.testing.assert_close(layer.wo, wo)
    # k and v are the teacher's own storage, not a parameter: nothing can train them apart.
    assert layer.wkv.data_ptr() == wk.data_ptr()
    assert "wkv" not in dict(layer.named_parameters()) and "wkv" not in layer.state_dict()
    x = torch.randn(1, 10, TINY.n_embd)
    cos, sin = _tables(model, 10)
    layer.forward_dense(x, cos, sin).square().sum().backward()
    grads = {n: p.grad for n, p in layer.named_parameters()}
    assert set(grads) == {"wq", "wo", "wg", "bg", "mix"} and all(
        g is not None and g.abs().sum() > 0 for g in grads.values()
    )
    assert teacher.wqkv.grad is None


def test_grouped_query_teacher_equals_its_expanded_multi_head_form() -> None:
    """GQA handled by repeating k/v heads: a 2-KV-head teacher == a 4-KV-head one with the rows repeated."""
    model = tiny_model(seed=5)
    gqa = model.slots[0].impl("dsla")
    mha_cfg = dataclasses.replace(TINY, n_kv_head=TINY.n_head)
    mha_model = Transformer.random(mha_cfg, seed=9)
    teacher = mha_model.slots[0].impl("softmax")
    _, wk, wv, _ = model.slots[0].impl("softmax").projections()
    d, g = TINY.head_dim, TINY.n_head // TINY.n_kv_head
    with torch.no_grad():
        hq = TINY.n_head * d
        rep = lambda w: w.unflatten(0, (TINY.n_kv_head, d)).repeat_interleave(g, 0).flatten(0, 1)  # noqa: E731
        teacher.wqkv[hq : 2 * hq].copy_(rep(wk))
        teacher.wqkv[2 * hq :].copy_(rep(wv))
    mha = DSLAttention(mha_cfg, teacher)
    mha.load_state_dict(gqa.state_dict())
    x = torch.randn(2, 30, TINY.n_embd)
    cos, sin = _tables(model, 30)
    with torch.no_grad():
        torch.testing.assert_close(
            mha.forward_dense(x, cos, sin), gqa.forward_dense(x, cos, sin), atol=1e-5, rtol=1e-5
        )


@pytest.mark.parametrize("n_states", [1, 2])
def test_continuations_of_a_shared_prefix_equal_the_whole_sequences(n_states: int) -> None:
    # Layers 0 and 2 linear, layer 1 softmax: the prefix's states and keys carry into three continuations.
    model = tiny_model(n_states=n_states)
    for j in (0, 2):
        model.slots[j].active = kind_name(n_states)
    gen = torch.Generator().manual_seed(5)
    prefix = torch.randint(3, 259, (1, 37), generator=gen)
    rest = torch.randint(3, 259, (3, 21), generator=gen)
    with torch.no_grad():
        _, past = model.forward_from(prefix)
        h, after = model.forward_from(rest, past)
        whole = model(torch.cat([prefix.expand(3, -1), rest], 1), return_hidden=True)[1][-1]
    assert after.length == 58
    torch.testing.assert_close(h, whole[:, 37:], atol=2e-4, rtol=1e-4)
    assert not torch.allclose(h[0], h[1])  # the rows did continue differently
