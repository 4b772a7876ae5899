"""The per-layer cache: conversion of a layer in flight (the hook DSLA uses), side tensors, mixed kinds in one
step, revert for new sequences only, export/import that continues identically, and block accounting.

The recurrent kind here is a toy decayed linear attention defined in this file (DSLA's own comes later):
S_t = g S_{t-1} + k_t v_t^T per KV head, o_t = q_t S_t / sqrt(d), with the softmax layer's projections.
"""

from __future__ import annotations

import math

import torch
from safetensors.torch import load_file, save_file

from tether.cloud.lm import AttentionLayer, CacheExport, CacheKind, SamplingParams

DECAY = 0.9
LAYER = 1


class ToyLinear(AttentionLayer):
    cache_kind = CacheKind.STATE

    def __init__(self, softmax) -> None:
        super().__init__()
        self.w = softmax.projections()  # views of the teacher's weights, not new parameters
        self.h, self.kvh, self.hd = softmax.n_head, softmax.n_kv_head, softmax.head_dim

    def _qkv(self, x):
        wq, wk, wv, _ = self.w
        q = (x @ wq.T).unflatten(-1, (self.kvh, self.h // self.kvh, self.hd))  # (..., kvh, g, hd)
        return q, (x @ wk.T).unflatten(-1, (self.kvh, self.hd)), (x @ wv.T).unflatten(-1, (self.kvh, self.hd))

    def _out(self, o):  # (..., kvh, g, hd) -> (..., n_embd)
        return o.flatten(-3) @ self.w[3].T / math.sqrt(self.hd)

    def new_state(self):
        return {"S": torch.zeros(self.kvh, self.hd, self.hd)}

    def forward_dense(self, x, cos, sin):
        q, k, v = self._qkv(x)  # (B, T, kvh, g, hd), (B, T, kvh, hd) x2
        T = x.shape[1]
        t = torch.arange(T)
        decay = torch.where(t[:, None] >= t[None, :], DECAY ** (t[:, None] - t[None, :]).float(), 0.0)
        scores = torch.einsum("btkgd,bskd->bkgts", q, k) * decay  # (B, kvh, g, T, T)
        return self._out(torch.einsum("bkgts,bskd->btkgd", scores, v))

    def forward_step(self, x, batch):
        q, k, v = self._qkv(x)
        out = torch.empty_like(q)
        for j, (row, n, _context) in enumerate(batch.segments):
            S = batch.state(j)["S"].clone()
            for i in range(row, row + n):
                S = DECAY * S + k[i][:, :, None] * v[i][:, None, :]  # (kvh, hd, hd)
                out[i] = torch.einsum("kgd,kde->kge", q[i], S)
            batch.set_state(j, {"S": S})
        return self._out(out)

    def convert_from(self, source, cache):
        if "side.x" not in cache:
            raise NotImplementedError("the toy needs the layer's inputs to fold")
        _, k, v = self._qkv(cache["side.x"])  # (T, kvh, hd)
        T = k.shape[0]
        w = DECAY ** torch.arange(T - 1, -1, -1, dtype=torch.float32)
        return {"S": torch.einsum("t,tkd,tke->kde", w, k, v)}


class Hybrid(AttentionLayer):
    """Dense reference of a sequence converted at position c: softmax outputs before c, the linear kind after."""

    def __init__(self, softmax, linear, c: int) -> None:
        super().__init__()
        self.parts, self.c = (softmax, linear), c

    def forward_dense(self, x, cos, sin):
        soft, lin = (p.forward_dense(x, cos, sin) for p in self.parts)
        return torch.cat([soft[:, : self.c], lin[:, self.c :]], dim=1)

    def forward_step(self, x, batch):
        raise NotImplementedError


def _install(engine):
    slot = engine.model.slots[LAYER]
    if "linear" not in slot.impls:
        slot.add_kind("linear", ToyLinear(slot.impls["softmax"]))
    return slot


def _dense_greedy(model, tokens, n):
    seq = list(tokens)
    with torch.inference_mode():
        for _ in range(n):
            seq.append(int(model(torch.tensor([seq]))[0, -1].argmax()))
    return seq[len(tokens) :]


def _run(engine, prompt, params, until=None, at_pause=None):
    """Step a single request; call at_pause(rid) once it has `until` output tokens."""
    outs = []
    rid = engine.submit(prompt, params, on_output=outs.append)
    paused = False
    while not (outs and outs[-1].finished):
        engine.step()
        if not paused and until is not None and sum(len(o.token_ids) for o in outs) >= until:
            paused = True
            at_pause(rid)
    return [t for o in outs for t in o.token_ids]


def test_toy_kind_matches_its_dense_form(tiny) -> None:
    engine = tiny(
        cache=__import__("tether.cloud.lm", fromlist=["CacheConfig"]).CacheConfig(prefix_caching=False)
    )
    slot = _install(engine)
    slot.active = "linear"
    try:
        prompt = engine.tokenizer.encode("linear attention from the first token")
        got = engine.generate([prompt], SamplingParams(temperature=0.0, max_tokens=10, ignore_eos=True))[0]
        assert got.token_ids == _dense_greedy(engine.model, prompt, 10)
    finally:
        slot.active = "softmax"


def test_converting_a_layer_in_flight_folds_its_kv_into_a_state(tiny) -> None:
    engine = tiny()
    slot = _install(engine)
    slot.keep_inputs = True  # new sequences keep layer 1's inputs: the fold needs them
    prompt = engine.tokenizer.encode("convert me while I am running, please")
    params = SamplingParams(temperature=0.0, max_tokens=20, ignore_eos=True)
    seen = {}

    def convert(rid):
        def snapshot(e):
            req = e._requests[rid]
            seen["c"], seen["tokens"] = req.seq.num_tokens, list(req.tokens)
            seen["side"] = e.cache.layer_cache(req.seq, LAYER)["side.x"]
            seen["blocks_before"] = e.cache.usage().kv_blocks_used
            seen["layer_blocks"] = len(req.seq.kv_blocks[LAYER])

        engine.call(snapshot)
        failed = engine.convert_layer(LAYER, "linear", in_flight=True)
        engine.call(
            lambda e: seen.update(seq=e._requests[rid].seq, blocks_after=e.cache.usage().kv_blocks_used)
        )
        engine.revert_layer(LAYER)  # new sequences only: this one keeps its state
        engine.step()
        assert failed.result() == {}

    out = _run(engine, prompt, params, until=6, at_pause=convert)
    slot.keep_inputs = False
    c, tokens = seen["c"], seen["tokens"]
    assert seen["seq"].kinds[LAYER] == "linear" and seen["seq"].cache_kinds[LAYER] is CacheKind.STATE
    assert seen["seq"].kv_blocks[LAYER] == [] and LAYER not in seen["seq"].side_layers
    assert (
        seen["blocks_after"] == seen["blocks_before"] - seen["layer_blocks"]
    )  # the layer's blocks came back
    # The kept side tensors are the layer's inputs: the normed hidden state entering layer 1.
    with torch.inference_mode():
        _, hidden = engine.model(torch.tensor([tokens[:c]]), return_hidden=True)
        x1 = engine.model.layers[LAYER].attn_norm(hidden[LAYER])[0]
    torch.testing.assert_close(seen["side"], x1, atol=1e-5, rtol=1e-5)
    # After the conversion the sequence computes exactly what a model with softmax before c and
    # the folded linear state from c on computes.
    slot.add_kind("hybrid", Hybrid(slot.impls["softmax"], slot.impls["linear"], c))
    slot.active = "hybrid"
    try:
        assert out[len(tokens) - len(prompt) :] == _dense_greedy(
            engine.model, tokens, len(out) - (len(tokens) - len(prompt))
        )
    finally:
        slot.active = "softmax"
        del slot.impls["hybrid"]
    assert engine.cache.usage().kv_blocks_used == 0 and engine.cache.usage().side_blocks_used == 0


def test_conversion_without_side_tensors_is_refused_and_the_sequence_keeps_its_kind(tiny) -> None:
    engine = tiny()
    _install(engine)
    result = {}

    def convert(rid):
        result["failed"] = engine.convert_layer(LAYER, "linear", in_flight=True)
        engine.revert_layer(LAYER)
        engine.step()

    ref = engine.generate(["no inputs kept"], SamplingParams(temperature=0.0, max_tokens=8, ignore_eos=True))[
        0
    ]
    out = _run(
        engine, "no inputs kept", SamplingParams(temperature=0.0, max_tokens=8, ignore_eos=True), 3, convert
    )
    failed = result["failed"].result()
    assert len(failed) == 1 and "needs the layer's inputs" in next(iter(failed.values()))
    assert out == ref.token_ids  # untouched: still softmax attention


def test_mixed_kinds_in_one_step_give_each_sequence_its_own_result(tiny) -> None:
    engine = tiny()
    slot = _install(engine)
    params = SamplingParams(temperature=0.0, max_tokens=12, ignore_eos=True)
    soft_alone = engine.generate(["softmax sequence"], params)[0].token_ids
    slot.active = "linear"
    lin_alone = engine.generate(["linear sequence"], params)[0].token_ids
    slot.active = "softmax"
    outs = {}
    engine.submit(
        "softmax sequence", params, on_output=lambda o: outs.setdefault("soft", []).extend(o.token_ids)
    )
    engine.step()
    engine.convert_layer(LAYER, "linear", in_flight=False)  # the running one keeps softmax
    engine.submit(
        "linear sequence", params, on_output=lambda o: outs.setdefault("lin", []).extend(o.token_ids)
    )
    engine.step()
    kinds = sorted(s.kinds[LAYER] for s in engine.cache.seqs.values())
    assert kinds == ["linear", "softmax"]
    engine.run_until_idle()
    slot.active = "softmax"
    assert outs["soft"] == soft_alone and outs["lin"] == lin_alone


def _export_midway(engine, prompt, params, after, convert=False):
    """Run `prompt`, export its cache after `after` output tokens; returns (all tokens, export, tokens then)."""
    got = {}

    def export(rid):
        if convert:
            engine.convert_layer(LAYER, "linear", in_flight=True)
            engine.revert_layer(LAYER)
        got["export"] = engine.export(rid)
        got["tokens"] = engine.request_tokens(rid)
        engine.step()

    out = _run(engine, prompt, params, after, export)
    return out, got["export"].result(), got["tokens"].result()


def test_export_then_import_continues_identically(tiny, tmp_path) -> None:
    params = SamplingParams(temperature=0.0, max_tokens=24, ignore_eos=True)
    source = tiny()
    prompt = source.tokenizer.encode("migrate this conversation to another engine")
    full, export, tokens = _export_midway(source, prompt, params, after=9)
    assert export.num_tokens == len(tokens) - 1 and export.kinds == ["softmax"] * 3
    assert export.layers[0]["k"].shape == (export.num_tokens, 2, 16)
    save_file(export.to_tensors(), tmp_path / "cache.safetensors")  # the export is plain tensors
    restored = CacheExport.from_tensors(load_file(tmp_path / "cache.safetensors"))
    target = tiny()
    rest = SamplingParams(temperature=0.0, max_tokens=24 - (len(tokens) - len(prompt)), ignore_eos=True)
    outs = []
    target.submit(tokens, rest, import_cache=restored, on_output=outs.append)
    target.run_until_idle()
    assert outs[-1].cached_tokens == export.num_tokens
    assert tokens[len(prompt) :] + [t for o in outs for t in o.token_ids] == full
    assert target.cache.usage().kv_blocks_used == 0 and source.cache.usage().kv_blocks_used == 0


def test_export_with_a_state_layer_continues_identically(tiny) -> None:
    params = SamplingParams(temperature=0.0, max_tokens=20, ignore_eos=True)
    source = tiny()
    slot = _install(source)
    slot.keep_inputs = True
    prompt = source.tokenizer.encode("a state travels with its sequence")
    try:
        full, export, tokens = _export_midway(source, prompt, params, after=7, convert=True)
    finally:
        slot.keep_inputs = False
    assert export.kinds[LAYER] == "linear" and set(export.layers[LAYER]) == {"S"}
    target = tiny()  # the same model object: the linear kind is registered there too
    outs = []
    rest = SamplingParams(temperature=0.0, max_tokens=20 - (len(tokens) - len(prompt)), ignore_eos=True)
    target.submit(tokens, rest, import_cache=export, on_output=outs.append)
    target.run_until_idle()
    assert tokens[len(prompt) :] + [t for o in outs for t in o.token_ids] == full
    assert target.cache.usage().kv_blocks_used == 0
