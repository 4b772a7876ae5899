"""Speed of the engine at a conversion level: decode from caches of T tokens, and a concurrent long-context load.

Decode: a cache of T tokens per sequence is imported (random K/V for softmax layers, a random
state for DSLA ones: the cost of a step does not depend on the values, and imported pages
are real memory, not the zero page), then the engine's decode steps are timed. One engine
serves every level: a sequence's kinds come with its cache.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch

from tether.cloud.dsla.policy import PolicyConfig
from tether.cloud.dsla.serve import DSLAServe
from tether.cloud.lm import CacheExport, LLMEngine, SamplingParams

__all__ = ["concurrent_load", "decode_speed", "level_kinds", "paired_decode_speed", "synthetic_export"]


def level_kinds(n_layer: int, order: Sequence[int], level: int, kind: str) -> list[str]:
    """Per layer: `kind` for the first `level` layers of the order, softmax elsewhere."""
    kinds = ["softmax"] * n_layer
    for layer in order[:level]:
        kinds[layer] = kind
    return kinds


def set_level(model, order: Sequence[int], level: int, kind: str) -> None:
    """Make `level` layers of the order active in `kind` for the dense forward and new sequences."""
    for slot, k in zip(model.slots, level_kinds(len(model.slots), order, level, kind), strict=True):
        slot.active = k


def synthetic_export(engine: LLMEngine, kinds: list[str], T: int, seed: int = 0) -> CacheExport:
    """A cache of T tokens with random contents; the K/V tensors are shared by the softmax layers
    (the import copies them into the pool)."""
    cfg = engine.model.config
    gen = torch.Generator().manual_seed(seed)
    k = torch.randn(T, cfg.n_kv_head, cfg.head_dim, generator=gen)
    v = torch.randn(T, cfg.n_kv_head, cfg.head_dim, generator=gen)
    layers = []
    for slot, kind in zip(engine.model.slots, kinds, strict=True):
        if kind == "softmax":
            layers.append({"k": k, "v": v})
        else:
            state = slot.impl(kind).new_state()
            layers.append({name: torch.randn(t.shape, generator=gen) * 0.01 for name, t in state.items()})
    tokens = torch.randint(3, min(cfg.vocab_size, 30000), (T,), generator=gen).tolist()
    return CacheExport(tokens, kinds, layers)


def decode_speed(
    engine: LLMEngine, export: CacheExport, batch: int, steps: int, repeats: int
) -> tuple[list[float], list[float]]:
    """`batch` sequences from `export` decode together; returns per repeat (tokens/s, ms per step)."""
    params = SamplingParams(temperature=0, max_tokens=steps * repeats + 4, ignore_eos=True)
    started: set[str] = set()
    ids = [
        engine.submit(
            export.token_ids + [7], params, import_cache=export, on_output=lambda o: started.add(o.request_id)
        )
        for _ in range(batch)
    ]
    try:
        while len(started) < batch:  # imports, then each runs its last prompt token
            engine.step()
        engine.step()  # warm-up: one plain decode step of the whole batch
        rates, ms = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(steps):
                engine.step()
            dt = (time.perf_counter() - t0) / steps
            rates.append(batch / dt)
            ms.append(dt * 1e3)
        return rates, ms
    finally:
        for rid in ids:
            engine.cancel(rid)
        engine.run_until_idle()


def paired_decode_speed(
    engine: LLMEngine, exports: dict[str, CacheExport], batch: int, steps: int, rounds: int
) -> dict[str, tuple[list[float], list[float]]]:
    """`decode_speed` of each export, one repeat at a time, taking turns (A B, B A, A B, ...): on a
    shared machine one decode varies from the next by up to a tenth, and a level measured minutes
    after its baseline carries whatever the machine did meanwhile into the ratio; taking turns
    spreads it over both."""
    out: dict[str, tuple[list[float], list[float]]] = {label: ([], []) for label in exports}
    labels = list(exports)
    for r in range(rounds):
        for label in labels if r % 2 == 0 else labels[::-1]:
            rates, ms = decode_speed(engine, exports[label], batch, steps, repeats=1)
            out[label][0].extend(rates)
            out[label][1].extend(ms)
    return out


def concurrent_load(
    engine: LLMEngine,
    prompts: list[list[int]],
    max_tokens: int,
    *,
    serve: DSLAServe | None = None,
) -> dict[str, float]:
    """Every prompt submitted at once; wall time to the last token. With `serve`, the load policy
    runs (auto) while the load is served, converting layers and folding sequences in flight."""
    params = SamplingParams(temperature=0, max_tokens=max_tokens, ignore_eos=True)
    first: dict[str, float] = {}
    done: list[float] = []
    t0 = time.perf_counter()

    def on_output(out) -> None:
        first.setdefault(out.request_id, time.perf_counter() - t0)
        if out.finished:
            done.append(time.perf_counter() - t0)

    engine.start()
    if serve is not None:
        serve.start()
    try:
        for p in prompts:
            engine.submit(p, params, on_output=on_output)
        while len(done) < len(prompts):
            time.sleep(0.05)
    finally:
        if serve is not None:
            serve.stop()
        engine.stop()
    wall = max(done)
    tokens = sum(len(p) for p in prompts) + max_tokens * len(prompts)
    return {
        "wall_s": wall,
        "tokens_per_s": tokens / wall,
        "output_tokens_per_s": max_tokens * len(prompts) / wall,
        "ttft_mean_s": sum(first.values()) / len(first),
        "level": float(serve.level) if serve is not None else 0.0,
    }


def bench_policy(convert_context: int = 1024) -> PolicyConfig:
    """The reference thresholds (context 1024, revert at 80% of it) with the cadence scaled to a
    benchmark of minutes, not hours; `convert_context` lower for the tiny --quick prompts."""
    return PolicyConfig(
        interval_s=1.0,
        cooldown_s=2.0,
        max_fraction=1.0,
        convert_context=min(convert_context, 1024),
        revert_context=int(0.8 * min(convert_context, 1024)),
    )
