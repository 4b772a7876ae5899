"""`tether bench lm`: the shared LM engine against transformers `generate` on the same model and prompts.

Workload: first user turns of ShareGPT conversations (chat template applied, 24-160 prompt
tokens), every request generating the same number of tokens, greedy. Measured in one run,
in one process, with the same torch threads, all computing in the main thread (the engine's
loop too, `LLMEngine.run`, with a thread that only submits at the arrival times): a second
thread with its own OpenMP team would slow both (see `LLMEngine.start`).

- single stream: one request alone; decode tokens/s after the first token, and TTFT, against
  transformers `generate` at batch 1. Target: at least as fast (ratio >= 1).
- Poisson load: requests arriving at `rate` per second; output tokens/s over the makespan
  (first arrival to last completion) and TTFT/TPOT percentiles, against transformers serving
  one request at a time as they arrive (targets: >= 2x throughput, lower p99 TTFT) and static
  batches of 8 left-padded prompts (target: >= its throughput). The engine runs at most 8
  sequences per step, the static batch size. The default load, 4 requests/s of 48 output
  tokens (192 tokens/s offered), is above what any of the three systems can serve on 2 cores,
  so each runs saturated with a queue and its throughput is its capacity under these arrivals
  (at a rate a system keeps up with, its throughput is just the offered load and says
  nothing); the notes compare each measured throughput with the offered load.
- Ablation (no target): the engine with its GEMMs on plain `F.linear` (MKL, as transformers
  runs them) instead of oneDNN-packed weights, to separate scheduling from kernels.

Each figure is the median of 3 runs after an unrecorded warm-up. The prefix cache is cleared
before each run (no reuse across runs; within a run the shared system prompt's full block is
reused, a feature of the engine). Options (`tether bench lm --key=value`): threads,
max_batch_size, rate, requests, output_tokens.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from tether.bench import BenchContext, BenchReport, row
from tether.bench.lm.runners import (
    LoadResult,
    engine_load,
    engine_single,
    hf_load_one_at_a_time,
    hf_load_static,
    hf_single,
    poisson_arrivals,
)

__all__ = ["run"]


def _prompts(tokenizer, n: int, lo: int = 24, hi: int = 160) -> list[list[int]]:
    from tether.cloud.data import sharegpt

    out: list[list[int]] = []
    for conv in sharegpt.load("val", limit=4000):
        first = conv.turns[0]
        if first.role != "user":
            continue
        ids = tokenizer.encode(tokenizer.apply_chat_template([{"role": "user", "content": first.text}]))
        if lo <= len(ids) <= hi:
            out.append(ids)
        if len(out) == n:
            return out
    raise RuntimeError(f"only {len(out)} ShareGPT prompts of {lo}-{hi} tokens, wanted {n}")


def run(ctx: BenchContext) -> BenchReport:
    from tether.bench.lm.reference import hf_reference
    from tether.cloud.lm import EngineConfig, LLMEngine, SchedulerConfig

    opt = ctx.options
    threads = int(opt.get("threads", 2))
    max_batch = int(opt.get("max_batch_size", 8))
    # --quick: 4 requests x 4 tokens, so its 4 systems x (warm-up + 3 repeats) fit the minute on a
    # slow day for this machine (8 x 8 took 124 s on 2026-11-27).
    n_req = int(opt.get("requests", 4 if ctx.quick else 16))
    n_out = int(opt.get("output_tokens", 4 if ctx.quick else 48))
    rate = float(opt.get("rate", 8.0 if ctx.quick else 4.0))
    repeats = 3
    load_before = os.getloadavg()

    ctx.progress(
        f"loading the engine ({threads} threads, max_batch_size {max_batch}) and the transformers reference"
    )
    engine = LLMEngine.load(
        config=EngineConfig(threads=threads, scheduler=SchedulerConfig(max_batch_size=max_batch))
    )
    hf_model, _ = hf_reference()
    torch.set_num_threads(threads)
    prompts = _prompts(engine.tokenizer, n_req)
    arrivals = poisson_arrivals(n_req, rate, seed=0)
    try:
        # Repeats alternate between the systems, so a burst of load from elsewhere on the machine
        # lands on all of them rather than on one.
        ctx.progress(f"single stream: {n_out} tokens, engine vs generate (batch 1)")
        single_prompt = prompts[0]
        engine_single(engine, single_prompt, n_out)  # warm-ups, not recorded
        hf_single(hf_model, single_prompt, n_out)
        ours_single, hf_single_runs = [], []
        for _ in range(repeats):
            ours_single.append(engine_single(engine, single_prompt, n_out))
            hf_single_runs.append(hf_single(hf_model, single_prompt, n_out))

        plain_cfg = replace(engine.config, packed_weights=False)
        packed_cfg = engine.config

        def engine_plain(p: list[list[int]], a: list[float]) -> LoadResult:
            engine.config = plain_cfg  # read by the engine thread at each step; nothing is in flight here
            try:
                return engine_load(engine, p, a, n_out)
            finally:
                engine.config = packed_cfg

        systems = {
            "engine": lambda p, a: engine_load(engine, p, a, n_out),
            "engine_plain": engine_plain,
            "one_at_a_time": lambda p, a: hf_load_one_at_a_time(hf_model, p, a, n_out),
            "static8": lambda p, a: hf_load_static(hf_model, p, a, n_out, batch=8),
        }
        loads: dict[str, list[LoadResult]] = {name: [] for name in systems}
        # One-time costs (weight packing, first-call allocations) are paid by any warm-up; --quick keeps it small.
        n_warm = min(2 if ctx.quick else 8, n_req)
        ctx.progress(f"Poisson load: {n_req} requests at {rate}/s, {n_out} tokens each; warm-up")
        for fn in systems.values():
            fn(prompts[:n_warm], arrivals[:n_warm])
        for rep in range(repeats):
            for name, fn in systems.items():
                res = fn(prompts, arrivals)
                loads[name].append(res)
                ctx.progress(
                    f"  run {rep + 1}/{repeats} {name}: {res.throughput:.1f} tokens/s, "
                    f"p99 TTFT {res.ttft_p(99) * 1e3:.0f} ms"
                )
    finally:
        engine.stop()  # ends anything left (a failed run) and frees its blocks

    params = {
        "model": engine.name,
        "threads": threads,
        "max_batch_size": max_batch,
        "requests": n_req,
        "output_tokens": n_out,
        "rate_per_s": rate,
        "offered_tokens_per_s": rate * n_out,
        "prompt_tokens_mean": float(np.mean([len(p) for p in prompts])),
    }
    single_params = {
        "model": engine.name,
        "threads": threads,
        "prompt_tokens": len(single_prompt),
        "output_tokens": n_out,
    }
    ours, one, static = loads["engine"], loads["one_at_a_time"], loads["static8"]
    plain = loads["engine_plain"]
    gen1, gen_one, gen_static = (
        "transformers generate, batch 1",
        "transformers one at a time",
        "transformers static batches of 8",
    )
    rows = [
        row(
            "single-stream decode",
            [d for _, d in ours_single],
            "tokens/s",
            "higher",
            params=single_params,
            baseline=gen1,
            baseline_values=[d for _, d in hf_single_runs],
            target=1.0,
        ),
        row(
            "single-stream TTFT",
            [t * 1e3 for t, _ in ours_single],
            "ms",
            "lower",
            params=single_params,
            baseline=gen1,
            baseline_values=[t * 1e3 for t, _ in hf_single_runs],
        ),
        row(
            "Poisson throughput vs one-at-a-time",
            [r.throughput for r in ours],
            "tokens/s",
            "higher",
            params=params,
            baseline=gen_one,
            baseline_values=[r.throughput for r in one],
            target=2.0,
        ),
        row(
            "Poisson p99 TTFT vs one-at-a-time",
            [r.ttft_p(99) * 1e3 for r in ours],
            "ms",
            "lower",
            params=params,
            baseline=gen_one,
            baseline_values=[r.ttft_p(99) * 1e3 for r in one],
            target=1.0,
        ),
        row(
            "Poisson throughput vs static batches",
            [r.throughput for r in ours],
            "tokens/s",
            "higher",
            params=params,
            baseline=gen_static,
            baseline_values=[r.throughput for r in static],
            target=1.0,
        ),
        row(
            "Poisson throughput, engine on plain F.linear, vs static batches",
            [r.throughput for r in plain],
            "tokens/s",
            "higher",
            params=params,
            baseline=gen_static,
            baseline_values=[r.throughput for r in static],
        ),
        row(
            "Poisson p99 TTFT vs static batches",
            [r.ttft_p(99) * 1e3 for r in ours],
            "ms",
            "lower",
            params=params,
            baseline=gen_static,
            baseline_values=[r.ttft_p(99) * 1e3 for r in static],
        ),
        row(
            "Poisson p50 TTFT",
            [r.ttft_p(50) * 1e3 for r in ours],
            "ms",
            "lower",
            params=params,
            baseline=gen_static,
            baseline_values=[r.ttft_p(50) * 1e3 for r in static],
        ),
        row(
            "Poisson p50 TPOT",
            [r.tpot_p(50) * 1e3 for r in ours],
            "ms",
            "lower",
            params=params,
            baseline=gen_one,
            baseline_values=[r.tpot_p(50) * 1e3 for r in one],
        ),
        row(
            "Poisson p99 TPOT",
            [r.tpot_p(99) * 1e3 for r in ours],
            "ms",
            "lower",
            params=params,
            baseline=gen_static,
            baseline_values=[r.tpot_p(99) * 1e3 for r in static],
        ),
    ]
    load_after = os.getloadavg()
    offered = rate * n_out
    capacity = {
        name: float(np.median([r.throughput for r in runs]))
        for name, runs in (("engine", ours), ("one at a time", one), ("static batches", static))
    }
    saturated = all(c < 0.9 * offered for c in capacity.values())
    notes = [
        f"Offered load {rate:g} requests/s x {n_out} tokens = {offered:.0f} output tokens/s; measured "
        + ", ".join(f"{name} {c:.1f}" for name, c in capacity.items())
        + (
            " tokens/s: every system ran saturated (a queue built up), so throughput is its capacity."
            if saturated
            else " tokens/s: at least one system kept up with the offered load, so its throughput is the "
            "offered load, not its capacity (raise --rate)."
        ),
        "The engine's GEMMs run on oneDNN-packed weight copies (cloud/lm/packed.py); transformers runs "
        "F.linear (MKL). The 'plain F.linear' row is the engine without them.",
        f"2-core machine shared with other work: load average {load_before[0]:.1f} before, {load_after[0]:.1f} after "
        "(1 min); all systems ran in this one process, interleaved, computing in its main thread (the "
        "engine's loop included: one OpenMP team), so ratios compare like with like.",
        "Throughput = output tokens / (first arrival to last completion); every request generates exactly "
        f"{n_out} tokens (engine: ignore_eos; generate: min_new_tokens), greedy, float32.",
    ]

    def plot(path: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        names = ["engine", "engine,\nplain GEMM", "one at\na time", "static x8"]
        colors = ["tab:blue", "tab:cyan", "tab:gray", "tab:orange"]
        fig, axes = plt.subplots(1, 3, figsize=(14, 4))
        runs_all = (ours, plain, one, static)
        tput = [np.median([r.throughput for r in runs]) for runs in runs_all]
        ttft = [np.median([r.ttft_p(99) for r in runs]) for runs in runs_all]
        axes[0].bar(names, tput, color=colors)
        axes[0].axhline(offered, color="k", ls="--", lw=1, label="offered load")
        axes[0].legend(loc="upper right", fontsize=8)
        axes[0].set_ylabel("output tokens/s")
        axes[0].set_title(f"Poisson load ({n_req} req at {rate:g}/s)")
        axes[1].bar(names, ttft, color=colors)
        axes[1].set_ylabel("p99 TTFT (s)")
        axes[1].set_yscale("log")
        axes[1].set_title("p99 time to first token")
        axes[2].bar(
            ["engine", "generate"],
            [np.median([d for _, d in ours_single]), np.median([d for _, d in hf_single_runs])],
            color=["tab:blue", "tab:gray"],
        )
        axes[2].set_ylabel("decode tokens/s")
        axes[2].set_title("single stream, batch 1")
        fig.suptitle(f"tether bench lm: {engine.name}, {threads} threads, {time.strftime('%Y-%m-%d')}")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)

    return BenchReport(rows=rows, plot=plot, notes=notes)
