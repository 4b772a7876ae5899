"""`tether bench halos`: HALoS (arXiv 2506.04531) against synchronous data parallel, DiLoCo and Async
Local-SGD on the simulated 4 regions x 4 heterogeneous workers (cloud/halos/regions_4x4.yaml).

Validation loss against simulated wall-clock time, as the paper compares them. Every method trains the
same byte-level GPT from the same initial weights, each worker on the same data stream. A run ends at
whichever comes first: the common time cap (sync's time for its 2,000 global steps, whose loss is the
target, per seed) or the common token budget (`Setup.token_budget` global steps, the same for every
method); each method's learning-rate schedule (5% warmup, cosine to 10%) spans its own run
(`global_steps_within`). Real training steps, virtual clock in the reference's regime: the reference's
compute time per step (238 ms, Pythia-70M) and the topology's latencies are scaled by our model's
bytes over Pythia-70M's (`Topology.for_model`), so a model transfer costs as many compute steps as in
the reference; communication from the real model's bytes over the region matrix. Rows: time to target
(HALoS vs sync, vs Async Local-SGD) and the loss at the end of the run (HALoS vs sync); repeats are
seeds (model init and data streams), each (method, seed) run once, in parallel processes of one thread
each. Workers' learning rates come from `tune.py`, on a seed not reported here.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path

from tether.bench import BenchContext, BenchReport, row
from tether.cloud.halos import (
    DEFAULT_TOPOLOGY,
    Curve,
    Method,
    MethodConfigs,
    ModelConfig,
    RunConfig,
    Topology,
    WorkerOptimConfig,
    WorkloadConfig,
    global_steps_within,
    local_steps_for,
)

__all__ = ["METHODS", "TOKEN_BUDGET", "TUNING_SEED", "Setup", "run", "run_job", "run_steps", "time_cap"]

METHODS = (Method.HALOS, Method.ASYNC_LOCAL_SGD, Method.DILOCO, Method.SYNC)
LABELS = {
    Method.HALOS: "HALoS",
    Method.SYNC: "sync DP",
    Method.DILOCO: "DiLoCo",
    Method.ASYNC_LOCAL_SGD: "Async Local-SGD",
}
TUNING_SEED = 100  # learning rates are chosen on this seed (tune.py); the figures use others
# Every run ends after this many global steps of tokens, if the cap has not ended it first: 8x sync's
# 2,000 steps. In the reference's regime the asynchronous methods turn tokens over ~70x (HALoS) and
# ~40x (Async Local-SGD) faster than sync, so running them to the cap would cost ~35x sync's real
# steps; the budget bounds every method's real work alike, and each schedule spans its own run.
TOKEN_BUDGET = 16_000

# Workers' peak AdamW learning rate per method: the best of each method's grid on TUNING_SEED, each run
# to the cap or the token budget (bench/halos/tune.py; its table is bench/results/halos_tuning.json).
# Loss at the end of the run on that seed: HALoS 1.9928 (grid 7.5e-4 .. 3e-3), Async Local-SGD 1.9937
# (7.5e-4 .. 6e-3), DiLoCo 1.9724 (7.5e-4 .. 2.4e-2), sync 2.0427 (3e-3 .. 1.2e-2); a best on an edge
# grew that method's grid (Async Local-SGD, DiLoCo).
_LR = {
    Method.HALOS.value: 1.5e-3,
    Method.ASYNC_LOCAL_SGD.value: 3e-3,
    Method.DILOCO.value: 1.5e-3,
    Method.SYNC.value: 6e-3,
}


@dataclass(frozen=True)
class Setup:
    """Sizes of one benchmark run."""

    workload: WorkloadConfig
    sync_steps: int  # the cap is sync's simulated time for this many global steps
    token_budget: int  # global steps of tokens after which any run ends (the same for every method)
    eval_points: int  # validation points over each run (every run's tokens / eval_points global steps)
    seeds: tuple[int, ...] = (0, 1, 2)
    lr: dict[str, float] = field(default_factory=lambda: dict(_LR))
    processes: int = 2
    warmup_fraction: float = 0.05


_WORKLOAD = WorkloadConfig(
    model=ModelConfig(seq_len=32, d_model=32, n_layer=1, n_head=4), batch_size=1, val_windows=512
)


def _setup(ctx: BenchContext) -> Setup:
    if ctx.quick:
        tiny = WorkloadConfig(model=ModelConfig(seq_len=16, d_model=16, n_layer=1, n_head=2), val_windows=16)
        return Setup(tiny, sync_steps=16, token_budget=64, eval_points=8, processes=1)
    if ctx.large:  # a bigger model, on the GPU when there is one
        big = WorkloadConfig(
            model=ModelConfig(seq_len=128, d_model=256, n_layer=4, n_head=8), val_windows=256, device="auto"
        )
        return Setup(
            big,
            sync_steps=2000,
            token_budget=TOKEN_BUDGET,
            eval_points=100,
            processes=min(8, os.cpu_count() or 2),
        )
    return Setup(_WORKLOAD, sync_steps=2000, token_budget=TOKEN_BUDGET, eval_points=100)


_TASKS: dict[WorkloadConfig, object] = {}


def time_cap(setup: Setup, n_bytes: int, topology: Topology) -> float:
    """The common simulated-time cap: sync's time for `setup.sync_steps` global steps (at this model's scale)."""
    topology = topology.for_model(n_bytes)
    return setup.sync_steps * topology.lockstep_round_time(n_bytes, [1] * len(topology.workers()))


def run_steps(method: str, setup: Setup, n_bytes: int, topology: Topology) -> float:
    """Global steps of tokens in `method`'s run: its tokens within the cap, at most the token budget."""
    cap = time_cap(setup, n_bytes, topology)
    return min(float(setup.token_budget), global_steps_within(method, topology, n_bytes, cap))


def run_job(method: str, seed: int, setup: Setup, lr: float | None = None) -> Curve:
    """One (method, seed) run to the cap or the token budget, in this process (module-level so a spawned
    process can import it)."""
    from tether.cloud.halos import LMTask, simulate

    if setup.workload not in _TASKS:  # one corpus load per process
        _TASKS[setup.workload] = LMTask(setup.workload)
    task = _TASKS[setup.workload]
    topology = Topology.default().for_model(task.n_bytes)
    cap = time_cap(setup, task.n_bytes, topology)
    steps = run_steps(method, setup, task.n_bytes, topology)  # this method's tokens in its run
    optim = WorkerOptimConfig(
        lr=setup.lr[method] if lr is None else lr,
        warmup_steps=max(1, round(setup.warmup_fraction * steps)),
        total_steps=max(2, math.ceil(steps)),
    )
    run = RunConfig(
        budget_steps=setup.token_budget,
        seed=seed,
        time_cap_s=cap,
        eval_every=max(1, round(steps / setup.eval_points)),
    )
    return simulate(method, task, topology, optim, run, MethodConfigs())


def _cache_dir(ctx: BenchContext, setup: Setup) -> Path:
    """Where finished runs are kept, so `--resume` can pick a crashed or interrupted benchmark up: one
    folder per regime and sizes (what every run shares), one file per method, seed and lr."""
    return ctx.out_dir / "halos_runs" / _cache_key(setup)


def _cache_key(setup: Setup) -> str:
    """What every run of a setup shares (not its seeds or learning rates): the regime and the sizes."""
    shared = (setup.workload, setup.sync_steps, setup.token_budget, setup.eval_points, setup.warmup_fraction)
    return hashlib.sha256((repr(shared) + DEFAULT_TOPOLOGY.read_text()).encode()).hexdigest()[:12]


def run_file(cache: Path, method: str, seed: int, lr: float) -> Path:
    """The cached curve of one run."""
    return cache / f"{method}-{seed}-lr{lr:g}.json"


def _run_all(ctx: BenchContext, setup: Setup) -> dict[tuple[str, int], Curve]:
    cache = _cache_dir(ctx, setup)
    cache.mkdir(parents=True, exist_ok=True)
    curves: dict[tuple[str, int], Curve] = {}
    jobs = []
    for m in METHODS:  # the slowest (asynchronous: the most tokens within the cap) first
        for s in setup.seeds:
            path = run_file(cache, m.value, s, setup.lr[m.value])
            if "resume" in ctx.options and path.exists():
                curves[(m.value, s)] = Curve(**json.loads(path.read_text()))
                ctx.progress(f"{m.value} seed {s}: resumed from {path}")
            else:
                jobs.append((m.value, s))

    def done(key: tuple[str, int], c: Curve) -> None:
        curves[key] = c
        run_file(cache, key[0], key[1], setup.lr[key[0]]).write_text(json.dumps(asdict(c)))
        ctx.progress(
            f"{key[0]} seed {key[1]}: loss {c.final_loss:.4f} at the end of the run ({c.final_time:.4g} simulated s, "
            f"{c.steps[-1]:.0f} global steps of tokens; {c.real_seconds:.0f} s real, {c.cpu_seconds:.0f} s CPU)"
        )

    if setup.processes <= 1:
        for m, s in jobs:
            done((m, s), run_job(m, s, setup))
        return curves
    with ProcessPoolExecutor(max_workers=setup.processes, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(run_job, m, s, setup): (m, s) for m, s in jobs}
        for fut in as_completed(futures):
            done(futures[fut], fut.result())
    return curves


def _finite(values: list[float]) -> list[float]:
    """Times to target with 'not reached' (inf) as NaN: the contract's row drops NaN from the median and
    cannot take inf; the row's params and the notes count what was dropped."""
    return [v if math.isfinite(v) else math.nan for v in values]


def run(ctx: BenchContext) -> BenchReport:
    setup = _setup(ctx)
    ctx.progress(
        f"{len(METHODS)} methods x {len(setup.seeds)} seeds, each to the common cap (sync's {setup.sync_steps} "
        f"global steps) or {setup.token_budget} global steps of tokens, {setup.processes} processes"
    )
    curves = _run_all(ctx, setup)
    seeds = setup.seeds
    ms = [m.value for m in METHODS]
    cap = curves[("sync", seeds[0])].final_time
    target = {s: curves[("sync", s)].final_loss for s in seeds}
    ttt = {m: [curves[(m, s)].time_to_target(target[s]) for s in seeds] for m in ms}
    stt = {m: [curves[(m, s)].steps_to_target(target[s]) for s in seeds] for m in ms}
    missed = {m: sum(math.isinf(t) for t in ttt[m]) for m in ms}
    final = {m: [curves[(m, s)].final_loss for s in seeds] for m in ms}
    tokens = {m: [curves[(m, s)].steps[-1] for s in seeds] for m in ms}
    ends = {m: [curves[(m, s)].final_time for s in seeds] for m in ms}
    # a looser target every method reaches: the worst loss at the end of a run of the seed
    common = {s: max(curves[(m, s)].final_loss for m in ms) for s in seeds}
    ttc = {m: [curves[(m, s)].time_to_target(common[s]) for s in seeds] for m in ms}
    st = curves[("sync", seeds[0])].stats
    model = setup.workload.model
    n_bytes = int(st["model_bytes"])
    ref = Topology.default()
    topo = ref.for_model(n_bytes)
    scale = topo.step_time_s / ref.step_time_s
    slow_link = n_bytes * 8.0 / (min(min(r) for r in topo.bandwidth_gbps) * 1e9)
    # Async Local-SGD's single server (region 0): each worker's share of its task spent computing
    cfg = MethodConfigs().async_local_sgd
    busy = {}
    for p in topo.workers():
        h = local_steps_for(cfg.local_steps, p.relative_speed, cfg.speed_scaled)
        busy[p.worker_id] = topo.compute_time(h, p.relative_speed) / topo.task_time(
            n_bytes, p, cfg.server_region, h
        )
    params = {
        "time_cap_s": round(cap, 4),
        "token_budget": setup.token_budget,
        "sync_steps": setup.sync_steps,
        "seeds": list(seeds),
        "d_model": model.d_model,
        "n_layer": model.n_layer,
        "seq_len": model.seq_len,
        "worker_batch": setup.workload.batch_size,
        "workers": 16,
        "regions": 4,
        "model_bytes": n_bytes,
        "time_scale": scale,  # simulated s = reference (Pythia-70M) s x this
        "step_time_ms": topo.step_time_s * 1e3,
        "worker_lr": dict(setup.lr),
        "not_reached": {m: missed[m] for m in ms},  # seeds whose time to target is inf (NaN in values)
    }

    def vs(name: str, a: str, b: str, values: dict, unit: str, target: float | None = None):
        return row(
            name,
            _finite(values[a]),
            unit,
            "lower",
            params=params,
            baseline=b,
            baseline_values=_finite(values[b]),
            target=target,
        )

    sim = "s (simulated)"
    rows = [
        vs("time to target: HALoS vs sync DP", "halos", "sync", ttt, sim, 5.0),
        vs("time to target: HALoS vs Async Local-SGD", "halos", "async_local_sgd", ttt, sim, 1.5),
        vs("final val loss (end of run): HALoS vs sync DP", "halos", "sync", final, "nats/byte", 1.0),
        vs("time to target: DiLoCo vs sync DP", "diloco", "sync", ttt, sim),
        vs("time to target: Async Local-SGD vs sync DP", "async_local_sgd", "sync", ttt, sim),
        vs("time to target: HALoS vs DiLoCo", "halos", "diloco", ttt, sim),
        vs("tokens to target (global steps): HALoS vs sync DP", "halos", "sync", stt, "global steps"),
        vs(
            "tokens to target (global steps): HALoS vs Async Local-SGD",
            "halos",
            "async_local_sgd",
            stt,
            "global steps",
        ),
        vs("time to the loss every method reaches: HALoS vs sync DP", "halos", "sync", ttc, sim),
        vs(
            "time to the loss every method reaches: HALoS vs Async Local-SGD",
            "halos",
            "async_local_sgd",
            ttc,
            sim,
        ),
        vs("time to the loss every method reaches: HALoS vs DiLoCo", "halos", "diloco", ttc, sim),
    ]
    for m in METHODS:
        rows.append(
            row(
                f"final val loss (end of run): {LABELS[m]}",
                final[m.value],
                "nats/byte",
                "lower",
                params=params,
            )
        )
    for m in METHODS:
        rows.append(
            row(
                f"global steps of tokens in the run: {LABELS[m]}",
                tokens[m.value],
                "global steps",
                "higher",
                params=params,
            )
        )
    for m in METHODS:
        rows.append(
            row(f"simulated length of the run: {LABELS[m]}", ends[m.value], sim, "lower", params=params)
        )
    for m in METHODS:
        cpu = [curves[(m.value, s)].cpu_seconds for s in seeds]
        rows.append(row(f"CPU seconds per run: {LABELS[m]}", cpu, "s", "lower", params=params))
    unreached = {LABELS[m]: missed[m.value] for m in METHODS}
    med = {m: sorted(v)[len(seeds) // 2] for m, v in tokens.items()}
    notes = [
        "regime: the reference's compute time per step (238.391 ms on the fastest worker, Pythia-70M = "
        f"{ref.step_time_bytes:.0f} B in float32) and the topology's latencies are scaled by our model's bytes "
        f"over Pythia-70M's ({n_bytes} / {ref.step_time_bytes:.0f} = {scale:.3e}; step "
        f"{topo.step_time_s * 1e6:.1f} us), communication is our real bytes over the committed bandwidths; so "
        f"one model transfer over the slowest link ({slow_link * 1e3:.2f} ms) costs "
        f"{slow_link / topo.step_time_s:.0f} steps of the fastest worker, as 281.7 MB at 0.117 Gbps cost "
        "Pythia-70M in the reference. Simulated seconds = the reference's seconds x the scale",
        f"common cap = sync's simulated time for {setup.sync_steps} global steps = {cap:.4f} s "
        f"(= {cap / scale / 3600:.1f} h at the reference's scale); a run ends at the cap or after "
        f"{setup.token_budget} global steps of tokens, whichever comes first; every method starts from "
        "the same initial weights (per seed) and each worker reads the same data stream in every method",
        "target loss per seed = sync's validation loss after its "
        f"{setup.sync_steps} steps: "
        + ", ".join(f"{target[s]:.4f}" for s in seeds)
        + "; the looser common target = the worst loss at the end of a run of the seed: "
        + ", ".join(f"{common[s]:.4f}" for s in seeds),
        "global steps of tokens in each method's run (median): "
        + ", ".join(f"{LABELS[m]} {med[m.value]:.0f}" for m in METHODS)
        + f" (one global step = 16 workers x {setup.workload.batch_size} x {model.seq_len} bytes); each "
        f"method's lr schedule ({setup.warmup_fraction:.0%} warmup, cosine to 10%) spans its own run",
        f"sync step = slowest worker's compute + hierarchical all-reduce = {st['step_time_s'] * 1e3:.3f} "
        f"simulated ms (all-reduce {st['allreduce_s'] * 1e3:.3f} ms, of which latency "
        f"{(st['allreduce_s'] - st['allreduce_bandwidth_only_s']) * 1e3:.3f} ms)",
        "Async Local-SGD's single server sits in region 0: the share of each task its workers spend "
        "computing (the rest is the model down and the delta up) is "
        + ", ".join(
            f"region {r} {min(busy[p.worker_id] for p in topo.workers() if p.region == r):.2f}"
            f"-{max(busy[p.worker_id] for p in topo.workers() if p.region == r):.2f}"
            for r in range(topo.n_regions)
        )
        + "; HALoS's workers talk to their region's server at 100 Gbps and only the local servers cross "
        "slow links, every K updates",
        "time to target is interpolated between validation points (each run has "
        f"{setup.eval_points} over its tokens); not reached by the end of the run: "
        + ", ".join(f"{k} {v}/{len(seeds)}" for k, v in unreached.items()),
        "hyperparameters are the reference's (HALoS H=8, K=32, alpha=0.25, local DN 0.2x16/0.9, global DN "
        "0.15x2/0.5; Async Local-SGD H=32, DN 0.05x32/0.9; DiLoCo H=32, outer Nesterov 0.7/0.9); workers' "
        f"AdamW peak lr per method {setup.lr}, each the best of its grid on seed {TUNING_SEED} (not reported "
        "here; bench/halos/tune.py)",
    ]
    return BenchReport(rows=rows, plot=lambda path: _plot(path, curves, seeds, target, cap), notes=notes)


def _plot(
    path: Path,
    curves: dict[tuple[str, int], Curve],
    seeds: tuple[int, ...],
    target: dict[int, float],
    cap: float,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_s) = plt.subplots(1, 2, figsize=(12, 4.5))
    colors = {
        Method.HALOS: "tab:red",
        Method.ASYNC_LOCAL_SGD: "tab:orange",
        Method.DILOCO: "tab:green",
        Method.SYNC: "tab:blue",
    }
    for m in METHODS:
        for i, s in enumerate(seeds):
            c = curves[(m.value, s)]
            label = LABELS[m] if i == 0 else None
            ax_t.plot(c.times[1:], c.val_loss[1:], color=colors[m], alpha=0.8, lw=1.2, label=label)
            ax_s.plot(c.steps[1:], c.val_loss[1:], color=colors[m], alpha=0.8, lw=1.2, label=label)
    tgt = sum(target.values()) / len(target)
    low = min(min(c.val_loss) for c in curves.values())
    for ax in (ax_t, ax_s):
        ax.axhline(tgt, color="k", ls="--", lw=0.8, label="target (sync at the cap)")
        ax.set_ylabel("validation loss (nats/byte)")
        ax.set_ylim(low - 0.05, max(low + 0.3, tgt + 1.0))  # the approach to the target, not the first drop
        ax.grid(alpha=0.3)
    ax_t.axvline(cap, color="gray", ls=":", lw=0.8, label="common time cap (sync's 2,000 steps)")
    ax_t.set_xscale("log")  # the asynchronous runs end an order of magnitude before sync's
    ax_s.set_xscale("log")
    ax_t.set_xlabel("simulated wall-clock time (s; the reference's regime, scaled to our model's bytes)")
    ax_t.set_title("HALoS vs baselines: 4 regions x 4 workers")
    ax_s.set_xlabel("global steps of tokens (16 workers' batches)")
    ax_s.set_title("same curves against tokens consumed")
    ax_t.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
