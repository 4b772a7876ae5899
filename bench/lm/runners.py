"""The three ways of serving a request stream that `tether bench lm` compares, on the same model and prompts.

- the engine (continuous batching over the paged cache), its loop in the calling thread while
  a submitter thread sleeps until each request's arrival time and queues it;
- transformers `generate`, one request at a time in arrival order (what a simple server does);
- transformers `generate` on static batches of 8 left-padded prompts, a batch starting once
  its 8 requests have arrived and the previous batch is done.

Every request asks for the same number of output tokens (the engine with `ignore_eos`,
`generate` with `min_new_tokens`), so every system does the same work. TTFT is measured
from the request's scheduled arrival to its first output token; TPOT is a request's mean
gap between output tokens after the first.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from tether.cloud.lm import LLMEngine, RequestOutput, SamplingParams

__all__ = [
    "LoadResult",
    "engine_load",
    "engine_single",
    "hf_load_one_at_a_time",
    "hf_load_static",
    "hf_single",
    "poisson_arrivals",
]


@dataclass
class LoadResult:
    ttft_s: list[float] = field(default_factory=list)
    tpot_s: list[float] = field(default_factory=list)
    output_tokens: int = 0
    makespan_s: float = 0.0  # first arrival to last completion

    @property
    def throughput(self) -> float:
        return self.output_tokens / self.makespan_s

    def ttft_p(self, q: float) -> float:
        return float(np.percentile(self.ttft_s, q))

    def tpot_p(self, q: float) -> float:
        return float(np.percentile(self.tpot_s, q))


def poisson_arrivals(n: int, rate: float, seed: int) -> list[float]:
    """n arrival times (s) of a Poisson process of `rate` per second, the first at 0."""
    gaps = np.random.default_rng(seed).exponential(1.0 / rate, size=n)
    gaps[0] = 0.0
    return np.cumsum(gaps).tolist()


# --- the engine -----------------------------------------------------------------------------------


def _greedy(n_out: int) -> SamplingParams:
    return SamplingParams(temperature=0.0, max_tokens=n_out, ignore_eos=True)


def engine_load(engine: LLMEngine, prompts: list[list[int]], arrivals: list[float], n_out: int) -> LoadResult:
    """Submit each prompt at its arrival time (from a thread) while this thread runs the engine's
    loop (`LLMEngine.run`; the engine must not be started) until all have finished."""
    firsts: dict[int, float] = {}
    lasts: dict[int, float] = {}
    counts: dict[int, int] = {}
    errors: list[str] = []
    finished: set[int] = set()
    done = threading.Event()
    lock = threading.Lock()

    def on_output(i: int):
        def cb(out: RequestOutput) -> None:
            now = time.perf_counter()
            with lock:
                if out.token_ids:
                    firsts.setdefault(i, now)
                    lasts[i] = now
                    counts[i] = counts.get(i, 0) + len(out.token_ids)
                if out.finished:
                    finished.add(i)
                    if out.error:
                        errors.append(out.error)
                    if len(finished) == len(prompts):
                        done.set()

        return cb

    def submit_all() -> None:  # pure Python: sleeps until each arrival, then queues the request
        try:
            for i, (p, a) in enumerate(zip(prompts, arrivals, strict=True)):
                delay = t0 + a - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                engine.submit(p, _greedy(n_out), on_output=on_output(i))
        except Exception as exc:
            errors.append(f"submit: {type(exc).__name__}: {exc}")
            done.set()

    engine.cache.prefix.clear()  # no reuse across repeats: each run starts cold
    t0 = time.perf_counter()
    submitter = threading.Thread(target=submit_all, name="arrivals")
    submitter.start()
    # The engine's loop runs in this thread, which also runs transformers for the baselines: one
    # OpenMP team in the process, so neither system pays for another's (see LLMEngine.start).
    engine.run(until=lambda: done.is_set() or time.perf_counter() - t0 > 3600)
    submitter.join()
    if not done.is_set():
        raise RuntimeError("the engine did not finish the load within an hour")
    if errors:
        raise RuntimeError(f"the engine failed requests: {errors[:3]}")
    res = LoadResult(output_tokens=sum(counts.values()), makespan_s=max(lasts.values()) - t0)
    for i, a in enumerate(arrivals):
        res.ttft_s.append(firsts[i] - (t0 + a))
        res.tpot_s.append((lasts[i] - firsts[i]) / max(counts[i] - 1, 1))
    return res


def engine_single(engine: LLMEngine, prompt: list[int], n_out: int) -> tuple[float, float]:
    """(TTFT s, decode tokens/s) of one request alone on the engine."""
    res = engine_load(engine, [prompt], [0.0], n_out)
    return res.ttft_s[0], 1.0 / res.tpot_s[0]


# --- transformers ------------------------------------------------------------------------------


class _Clock:
    """A logits processor that only notes when generate asks for the first token's scores (prefill done)."""

    def __init__(self) -> None:
        self.first: float | None = None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.first is None:
            self.first = time.perf_counter()
        return scores


def _hf_generate(model, prompts: list[list[int]], n_out: int) -> tuple[float, float]:
    """Left-padded batch generate; returns (time of the first token, time of the end)."""
    from transformers import LogitsProcessorList

    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), 2, dtype=torch.long)  # pad id 2 (<|im_end|>), masked out
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for r, p in enumerate(prompts):
        ids[r, width - len(p) :] = torch.tensor(p)
        mask[r, width - len(p) :] = 1
    clock = _Clock()
    with torch.inference_mode():
        out = model.generate(
            ids,
            attention_mask=mask,
            max_new_tokens=n_out,
            min_new_tokens=n_out,
            do_sample=False,
            pad_token_id=2,
            logits_processor=LogitsProcessorList([clock]),
        )
    end = time.perf_counter()
    if out.shape[1] - width != n_out:
        raise RuntimeError(f"generate made {out.shape[1] - width} tokens, asked for {n_out}")
    return clock.first, end


def hf_single(model, prompt: list[int], n_out: int) -> tuple[float, float]:
    """(TTFT s, decode tokens/s) of transformers generate on one prompt."""
    start = time.perf_counter()
    first, end = _hf_generate(model, [prompt], n_out)
    return first - start, (n_out - 1) / (end - first)


def hf_load_one_at_a_time(model, prompts: list[list[int]], arrivals: list[float], n_out: int) -> LoadResult:
    res = LoadResult()
    t0 = time.perf_counter()
    end = t0
    for p, a in zip(prompts, arrivals, strict=True):
        delay = t0 + a - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        first, end = _hf_generate(model, [p], n_out)
        res.ttft_s.append(first - (t0 + a))
        res.tpot_s.append((end - first) / (n_out - 1))
        res.output_tokens += n_out
    res.makespan_s = end - t0
    return res


def hf_load_static(
    model, prompts: list[list[int]], arrivals: list[float], n_out: int, batch: int = 8
) -> LoadResult:
    res = LoadResult()
    t0 = time.perf_counter()
    end = t0
    for start in range(0, len(prompts), batch):
        group, times = prompts[start : start + batch], arrivals[start : start + batch]
        delay = t0 + times[-1] - time.perf_counter()  # the batch is full when its last request arrives
        if delay > 0:
            time.sleep(delay)
        first, end = _hf_generate(model, group, n_out)
        for a in times:
            res.ttft_s.append(first - (t0 + a))
            res.tpot_s.append((end - first) / (n_out - 1))
        res.output_tokens += n_out * len(group)
    res.makespan_s = end - t0
    return res
