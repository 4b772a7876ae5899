"""HALoS's synchronous baselines (arXiv 2506.04531 Sec. 5) on the same virtual clock, topology and workers:
synchronous data parallel (all-reduce every step) and DiLoCo (arXiv 2311.08105).

Both advance in lock-step rounds, so a round lasts as long as its slowest worker plus one
all-reduce across regions (`Topology.allreduce_time`). A round that would end after the run's time
cap does not happen: the curve's last point is the model as it stands at the cap.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import torch

from tether.cloud.halos.config import DiLoCoConfig, RunConfig, WorkerOptimConfig
from tether.cloud.halos.curve import Curve, Recorder
from tether.cloud.halos.model import get_flat, set_flat
from tether.cloud.halos.optim import NesterovSGD, cosine_lr
from tether.cloud.halos.replicas import Job, WorkerPool
from tether.cloud.halos.topology import Topology, local_steps_for
from tether.cloud.halos.workload import LMTask

__all__ = ["run_diloco", "run_sync"]


def run_sync(task: LMTask, topology: Topology, optim: WorkerOptimConfig, run: RunConfig) -> Curve:
    """Synchronous data parallel: each global step averages every worker's gradient, one AdamW step.

    The average of the workers' mean losses over equal batches is the mean loss over their
    concatenated batch, so one backward pass over the concatenation computes the all-reduced gradient.
    Each worker draws from the same data stream as its asynchronous counterpart.
    """
    t0, c0 = time.perf_counter(), time.process_time()
    topology = topology.for_model(task.n_bytes)  # compute and latency at this model's scale
    places = topology.workers()
    n = len(places)
    model = task.new_model(run.seed)
    set_flat(model, task.init_theta(run.seed))
    opt = torch.optim.AdamW(
        model.decay_groups(optim.weight_decay),
        lr=optim.lr,
        betas=(optim.beta1, optim.beta2),
        eps=optim.eps,
        foreach=True,
    )
    rngs = [np.random.default_rng([run.seed, p.worker_id, 0]) for p in places]
    # a step waits for the slowest worker, then for the all-reduce of the gradients
    step_time = topology.lockstep_round_time(task.n_bytes, [1] * n)
    curve = Curve("sync", run.seed)
    rec = Recorder(curve, task, run, n)
    rec.observe(0.0, 0, lambda: get_flat(model))
    step, now, done = 0, 0.0, False
    while not done:
        if (step + 1) * step_time > rec.cap:
            rec.finish_at_cap(step * n, lambda: get_flat(model))
            break
        batches = [task.batch(rng) for rng in rngs]
        x = torch.cat([b[0] for b in batches])  # (n * B, T)
        y = torch.cat([b[1] for b in batches])
        for group in opt.param_groups:
            group["lr"] = cosine_lr(optim, step)
        model.train()
        loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), optim.grad_clip)
        opt.step()
        step += 1
        now = step * step_time
        done = rec.observe(now, step * n, lambda: get_flat(model))
    curve.real_seconds = time.perf_counter() - t0
    curve.cpu_seconds = time.process_time() - c0
    no_latency = replace(topology, latency_s=tuple((0.0,) * len(r) for r in topology.latency_s))
    curve.stats = {
        "halos.sim_time_s": curve.final_time,
        "halos.global_steps": step,
        "step_time_s": step_time,
        "model_bytes": task.n_bytes,
        "allreduce_s": topology.allreduce_time(task.n_bytes),
        "allreduce_bandwidth_only_s": no_latency.allreduce_time(task.n_bytes),
    }
    return curve


def run_diloco(
    task: LMTask, topology: Topology, optim: WorkerOptimConfig, run: RunConfig, cfg: DiLoCoConfig
) -> Curve:
    """DiLoCo: every worker runs H local AdamW steps from the shared model, the pseudo-gradients are
    averaged by all-reduce, and an outer Nesterov SGD step moves the shared model."""
    t0, c0 = time.perf_counter(), time.process_time()
    topology = topology.for_model(task.n_bytes)  # compute and latency at this model's scale
    places = topology.workers()
    n = len(places)
    pool = WorkerPool(n, task, optim, run.seed)
    steps = [local_steps_for(cfg.local_steps, p.relative_speed, cfg.speed_scaled) for p in places]
    round_time = topology.lockstep_round_time(task.n_bytes, steps)
    theta = task.init_theta(run.seed)
    outer = NesterovSGD(theta.numel(), cfg.outer_lr, cfg.outer_momentum, theta.device)
    curve = Curve("diloco", run.seed)
    rec = Recorder(curve, task, run, n)
    rec.observe(0.0, 0, theta)
    dispensed, rounds, now, done = 0, 0, 0.0, False
    while not done:
        if (rounds + 1) * round_time > rec.cap:
            rec.finish_at_cap(dispensed, theta)
            break
        start = dispensed / n  # global-step position of this round on the lr schedule
        results = pool.run([Job(p.worker_id, theta, start, h) for p, h in zip(places, steps, strict=True)])
        total = torch.stack([r.pseudo_grad for r in results]).sum(dim=0)
        dispensed += sum(steps)
        outer.step(theta, total / n)
        rounds += 1
        now = rounds * round_time
        done = rec.observe(now, dispensed, theta)
    curve.real_seconds = time.perf_counter() - t0
    curve.cpu_seconds = time.process_time() - c0
    curve.stats = {
        "halos.sim_time_s": curve.final_time,
        "halos.global_steps": dispensed / n,
        "round_time_s": round_time,
        "rounds": rounds,
    }
    return curve
