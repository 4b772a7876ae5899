"""The engine on a tiny random model: batching, chunked prefill, prefix reuse, preemption, cancel, errors, knobs."""

from __future__ import annotations

import pytest
import torch

from tether.cloud.lm import (
    AttentionLayer,
    CacheConfig,
    FinishReason,
    QueueFull,
    RequestRejected,
    SamplingParams,
    SchedulerConfig,
)

GREEDY = SamplingParams(temperature=0.0, max_tokens=12, ignore_eos=True)
PROMPTS = [
    "hello world, this is a test",
    "a",
    "the quick brown fox jumps over the lazy dog " * 2,
    "0123456789",
]


def _tokens(outs):
    return [o.token_ids for o in outs]


def _no_leak(engine) -> None:
    usage = engine.cache.usage()
    assert usage.kv_blocks_used == 0 and usage.side_blocks_used == 0, usage
    assert engine.cache.seqs == {} and not engine.scheduler.has_work()


def test_batched_generation_equals_one_at_a_time(tiny) -> None:
    engine = tiny()
    alone = [engine.generate([p], GREEDY)[0].token_ids for p in PROMPTS]
    together = _tokens(engine.generate(PROMPTS, GREEDY))
    assert together == alone
    assert all(len(t) == 12 for t in together)
    _no_leak(engine)


def test_chunked_prefill_equals_whole_prefill(tiny) -> None:
    whole = tiny(scheduler=SchedulerConfig(max_tokens_per_step=512))
    chunked = tiny(scheduler=SchedulerConfig(max_batch_size=4, max_tokens_per_step=7))
    assert _tokens(chunked.generate(PROMPTS, GREEDY)) == _tokens(whole.generate(PROMPTS, GREEDY))


def test_greedy_engine_matches_dense_forward(tiny) -> None:
    engine = tiny()
    ids = engine.tokenizer.encode(PROMPTS[2])
    out = engine.generate([ids], GREEDY)[0].token_ids
    seq = list(ids)
    with torch.inference_mode():
        for _ in range(12):
            seq.append(int(engine.model(torch.tensor([seq]))[0, -1].argmax()))
    assert out == seq[len(ids) :]


def test_prefix_reuse_serves_cached_blocks_and_changes_nothing(tiny) -> None:
    shared = "You are a helpful assistant. Answer briefly and precisely. " * 2  # > 6 blocks of 16 bytes
    prompts = [shared + "What is 2+2?", shared + "Name a colour."]
    on = tiny(cache=CacheConfig(prefix_caching=True))
    off = tiny(cache=CacheConfig(prefix_caching=False))
    first, second = (on.generate([p], GREEDY)[0] for p in prompts)
    assert first.cached_tokens == 0
    n_shared = len(on.tokenizer.encode(shared))
    assert second.cached_tokens == (n_shared // 16) * 16 > 0
    assert [first.token_ids, second.token_ids] == [off.generate([p], GREEDY)[0].token_ids for p in prompts]
    assert off.cache.usage().prefix_hit_tokens == 0
    _no_leak(on)
    assert on.cache.usage().kv_blocks_cached > 0  # idle entries stay cached, counted as free
    on.cache.prefix.clear()
    assert on.cache.kv_pool.num_free == on.cache.kv_pool.num_blocks


def test_preemption_under_a_small_pool_gives_the_same_tokens(tiny) -> None:
    params = SamplingParams(temperature=0.0, max_tokens=30, ignore_eos=True)
    roomy = tiny()
    # 256 B per token per layer, 16-token blocks: 36 blocks = 12 block-rows of 3 layers, 192 tokens in all,
    # while the 4 requests need ~4 x 60 tokens at their end.
    tight = tiny(cache=CacheConfig(kv_cache_bytes=36 * 16 * 256, prefix_caching=False))
    expected = _tokens(roomy.generate(PROMPTS, params))
    assert _tokens(tight.generate(PROMPTS, params)) == expected
    assert tight.scheduler.preemptions > 0 and roomy.scheduler.preemptions == 0
    assert tight.metrics.p_requests.labels(reason="length")._value.get() == 4
    _no_leak(tight)


def test_cancel_ends_the_request_and_returns_its_blocks(tiny) -> None:
    engine = tiny()
    outputs = []
    rid = engine.submit(
        PROMPTS[2], SamplingParams(temperature=0.0, max_tokens=200, ignore_eos=True), on_output=outputs.append
    )
    for _ in range(5):
        engine.step()
    assert engine.cache.usage().kv_blocks_used > 0
    engine.cancel(rid)
    engine.step()
    assert outputs[-1].finished and outputs[-1].finish_reason is FinishReason.ABORT
    assert 0 < outputs[-1].completion_tokens < 200
    _no_leak(engine)


class _Broken(AttentionLayer):
    """An attention kind whose step fails: the engine must end the step's requests, not die."""

    def forward_dense(self, x, cos, sin):
        raise RuntimeError("broken kind")

    def forward_step(self, x, batch):
        raise RuntimeError("broken kind")


def test_an_error_in_a_step_ends_its_requests_and_frees_their_blocks(tiny) -> None:
    engine = tiny()
    slot = engine.model.slots[1]
    slot.add_kind("broken", _Broken())
    slot.active = "broken"
    try:
        [out] = engine.generate([PROMPTS[0]], GREEDY)
    finally:
        slot.active = "softmax"
        del slot.impls["broken"]
    assert out.finish_reason is FinishReason.ERROR and "broken kind" in out.error
    _no_leak(engine)
    assert engine.generate([PROMPTS[0]], GREEDY)[0].finish_reason is FinishReason.LENGTH  # still serving


def test_max_batch_size_takes_effect_at_the_next_step(tiny) -> None:
    engine = tiny(scheduler=SchedulerConfig(max_batch_size=2, max_tokens_per_step=256))
    for p in PROMPTS:
        engine.submit(p, SamplingParams(temperature=0.0, max_tokens=50, ignore_eos=True))
    for _ in range(4):
        engine.step()
        assert engine.scheduler.num_running <= 2
    assert engine.scheduler.num_waiting == 2
    engine.set_limits(max_batch_size=4)
    engine.step()
    assert engine.scheduler.num_running == 4
    engine.set_limits(max_batch_size=1)
    engine.step()  # lowered: running requests keep their cache, but only one computes per step
    assert engine.metrics.snapshot()["lm.running"] == 4
    engine.stop()
    _no_leak(engine)


def test_seeded_sampling_is_reproducible_in_any_batch(tiny) -> None:
    engine = tiny()
    seeded = SamplingParams(temperature=0.9, top_p=0.9, top_k=50, max_tokens=16, seed=7, ignore_eos=True)
    alone = engine.generate([PROMPTS[0]], seeded)[0].token_ids
    batched = engine.generate([PROMPTS[1], PROMPTS[0], PROMPTS[2]], seeded)[1].token_ids
    assert alone == batched
    other = engine.generate(
        [PROMPTS[0]], SamplingParams(temperature=0.9, max_tokens=16, seed=8, ignore_eos=True)
    )
    assert other[0].token_ids != alone
    top1 = SamplingParams(temperature=1.0, top_k=1, max_tokens=12, ignore_eos=True)
    assert (
        engine.generate([PROMPTS[0]], top1)[0].token_ids == engine.generate([PROMPTS[0]], GREEDY)[0].token_ids
    )


def test_admission_control(tiny) -> None:
    engine = tiny(max_context=64, scheduler=SchedulerConfig(max_queue=2))
    with pytest.raises(RequestRejected, match="at most 63"):
        engine.submit("x" * 64, GREEDY)
    engine.submit("a", GREEDY)
    engine.submit("b", GREEDY)
    with pytest.raises(QueueFull, match="max_queue=2"):
        engine.submit("c", GREEDY)
    engine.run_until_idle()
    engine.submit("c", GREEDY)  # room again once the queue drained
    engine.run_until_idle()
    _no_leak(engine)


def test_context_full_ends_with_length(tiny) -> None:
    engine = tiny(max_context=40)
    [out] = engine.generate(["x" * 30], SamplingParams(temperature=0.0, max_tokens=100, ignore_eos=True))
    assert out.finish_reason is FinishReason.LENGTH and out.completion_tokens == 10
    _no_leak(engine)


def test_background_loop_streams_and_stops_cleanly(tiny) -> None:
    engine = tiny().start()
    chunks = []
    [out] = engine.generate([PROMPTS[0]], SamplingParams(temperature=0.0, max_tokens=8, ignore_eos=True))
    engine.submit(
        PROMPTS[0], SamplingParams(temperature=0.0, max_tokens=400, ignore_eos=True), on_output=chunks.append
    )
    engine.stop()  # ends the request in flight
    assert chunks and chunks[-1].finish_reason in (FinishReason.ABORT, FinishReason.LENGTH)
    assert len(out.token_ids) == 8
    _no_leak(engine)


def test_run_loop_in_the_callers_thread_serves_requests_from_another(tiny) -> None:
    """`run(until)`: the loop in this thread (the bench's way: one OpenMP team), requests queued elsewhere."""
    import threading

    engine = tiny()
    expected = _tokens(engine.generate(PROMPTS, GREEDY))
    finished: dict[int, list[int]] = {}
    got: dict[int, list[int]] = {i: [] for i in range(len(PROMPTS))}

    def on_output(i: int):
        def cb(out) -> None:
            got[i] += out.token_ids
            if out.finished:
                finished[i] = got[i]

        return cb

    submitter = threading.Thread(
        target=lambda: [engine.submit(p, GREEDY, on_output=on_output(i)) for i, p in enumerate(PROMPTS)]
    )
    submitter.start()
    engine.run(until=lambda: len(finished) == len(PROMPTS))
    submitter.join()
    assert [finished[i] for i in range(len(PROMPTS))] == expected
    _no_leak(engine)


def test_a_dense_forward_continued_from_a_prefix_equals_the_whole_sequence(tiny) -> None:
    model = tiny().model
    gen = torch.Generator().manual_seed(2)
    prefix = torch.randint(3, 259, (1, 30), generator=gen)
    rest = torch.randint(3, 259, (2, 12), generator=gen)
    with torch.no_grad():
        _, past = model.forward_from(prefix)
        h, _ = model.forward_from(rest, past)  # the one-row prefix shared by both rows
        _, full = model(torch.cat([prefix.expand(2, -1), rest], 1), return_hidden=True)
    torch.testing.assert_close(h, full[-1][:, 30:], atol=1e-4, rtol=1e-4)
