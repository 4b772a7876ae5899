"""DSLA inside the engine: constant memory per sequence when fully converted, and the exact fold of a KV cache."""

from __future__ import annotations

import torch
from dsla_tiny import TINY, tiny_model

from tether.cloud.dsla.serve import DSLAServe
from tether.cloud.lm import CacheExport, LLMEngine, SamplingParams
from tether.cloud.lm.attention import rope_tables


def _prompt(n: int, seed: int) -> list[int]:
    return torch.randint(3, 259, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def _collect(outputs: list[int]):
    return lambda out: outputs.extend(out.token_ids)


def test_fully_converted_model_keeps_constant_memory_per_sequence(engines) -> None:
    model = tiny_model()
    usage_at: dict[str, dict[int, tuple[int, int]]] = {"dsla": {}, "softmax": {}}
    for kind in ("dsla", "softmax"):
        for slot in model.slots:
            slot.active = kind
        engine: LLMEngine = engines(model)
        for n in (16, 200, 900):
            outputs: list[int] = []
            engine.submit(
                _prompt(n, n),
                SamplingParams(temperature=0, max_tokens=50, ignore_eos=True),
                on_output=_collect(outputs),
            )
            while len(outputs) < 3:  # prefilled and decoding: the cache covers the whole prompt
                engine.step()
            usage = engine.cache.usage()
            usage_at[kind][n] = (usage.kv_bytes_used, usage.state_bytes)
            engine.run_until_idle()
            assert engine.cache.usage().kv_blocks_used == 0 and engine.cache.usage().state_bytes == 0
    per_layer = model.slots[0].impl("dsla").state_bytes()
    assert per_layer == 2 * TINY.n_head * TINY.head_dim**2 * 4
    # DSLA: no KV at all, the same state bytes at 16, 200 and 900 tokens of context.
    assert set(usage_at["dsla"].values()) == {(0, TINY.n_layer * per_layer)}
    # Softmax (the check can fail): KV grows with the context, no state.
    kv = [usage_at["softmax"][n][0] for n in (16, 200, 900)]
    assert kv[0] < kv[1] < kv[2] and all(s == 0 for _, s in usage_at["softmax"].values())


def test_fold_equals_the_recurrence_over_the_same_inputs_and_generation_continues(engines) -> None:
    model = tiny_model(seed=1)
    LAYER = 1
    engine: LLMEngine = engines(model)
    serve = DSLAServe(engine, order=[LAYER, 0], lookahead=1)  # new sequences keep layer 1's inputs
    assert [s.keep_inputs for s in model.slots] == [False, True, False]
    prompt = _prompt(70, 7)
    outputs: list[int] = []
    params = SamplingParams(temperature=0, max_tokens=30, ignore_eos=True)
    rid = engine.submit(prompt, params, on_output=_collect(outputs))
    while len(outputs) < 6:
        engine.step()
    seen = {}

    def convert(e: LLMEngine) -> None:  # in the engine thread, between two steps
        (seq,) = e.cache.seqs.values()
        seen["before"] = e.cache.export_sequence(seq, prompt + outputs)
        seen["tokens"] = prompt + outputs  # the last sampled token is not in the cache yet
        serve._convert_next(e)
        seen["state"] = seq.states[LAYER]["S"].clone()
        seen["kv_blocks"] = list(seq.kv_blocks[LAYER])
        seen["side_layers"] = set(seq.side_layers)

    fut = engine.call(convert)
    engine.step()
    fut.result(0)
    assert serve.folds.folded == 1 and serve.folds.failed == 0
    assert seen["kv_blocks"] == [] and LAYER not in seen["side_layers"]  # the layer's cache was given back
    engine.run_until_idle()
    continued = outputs[len(seen["tokens"]) - len(prompt) :]
    assert len(continued) == params.max_tokens - (len(seen["tokens"]) - len(prompt))

    # The reference state: the DSLA recurrence (naive form) run over the same layer inputs from token 0.
    before: CacheExport = seen["before"]
    x = before.layers[LAYER]["side.x"]  # (T, n_embd): what layer 1 saw, as the softmax model ran
    T = before.num_tokens
    cos, sin = rope_tables(torch.arange(T), model.inv_freq)
    with torch.no_grad():
        _, S_ref = model.slots[LAYER].impl("dsla").forward_naive(x[None], cos, sin)
    torch.testing.assert_close(seen["state"], S_ref[0], atol=1e-4, rtol=1e-4)

    # Generation from the reference state (imported into a fresh engine) continues with the same tokens.
    layers = [dict(layer) for layer in before.layers]
    layers[LAYER] = {"S": S_ref[0]}
    kinds = list(before.kinds)
    kinds[LAYER] = "dsla"
    reference: list[int] = []
    other = engines(model)
    other.submit(
        seen["tokens"],
        SamplingParams(temperature=0, max_tokens=len(continued), ignore_eos=True),
        import_cache=CacheExport(before.token_ids, kinds, layers),
        on_output=_collect(reference),
    )
    other.run_until_idle()
    assert reference == continued
    assert rid  # the request ran to its end in the first engine
