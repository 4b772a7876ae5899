"""One simulated run of any method of the HALoS comparison (arXiv 2506.04531 Sec. 5), by name."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum

from tether.cloud.halos.baselines import run_diloco, run_sync
from tether.cloud.halos.config import (
    AsyncLocalSGDConfig,
    DiLoCoConfig,
    HalosConfig,
    RunConfig,
    WorkerOptimConfig,
)
from tether.cloud.halos.curve import Curve
from tether.cloud.halos.simulator import HierarchySim
from tether.cloud.halos.topology import Topology, local_steps_for
from tether.cloud.halos.workload import LMTask

__all__ = ["Method", "MethodConfigs", "global_steps_within", "simulate"]


class Method(str, Enum):
    HALOS = "halos"
    SYNC = "sync"
    DILOCO = "diloco"
    ASYNC_LOCAL_SGD = "async_local_sgd"


@dataclass(frozen=True)
class MethodConfigs:
    """The hyperparameters of every method (the reference's by default)."""

    halos: HalosConfig = field(default_factory=HalosConfig)
    diloco: DiLoCoConfig = field(default_factory=DiLoCoConfig)
    async_local_sgd: AsyncLocalSGDConfig = field(default_factory=AsyncLocalSGDConfig)


def simulate(
    method: Method | str,
    task: LMTask,
    topology: Topology,
    optim: WorkerOptimConfig,
    run: RunConfig,
    configs: MethodConfigs | None = None,
) -> Curve:
    """Train `method` to the run's token budget on the virtual clock; its validation curve."""
    try:
        method = Method(method)
    except ValueError:
        raise ValueError(f"method must be one of {[m.value for m in Method]}, but got {method!r}") from None
    cfg = configs or MethodConfigs()
    if method is Method.SYNC:
        return run_sync(task, topology, optim, run)
    if method is Method.DILOCO:
        return run_diloco(task, topology, optim, run, cfg.diloco)
    if method is Method.HALOS:
        return HierarchySim.halos(task, topology, optim, run, cfg.halos).run()
    return HierarchySim.async_local_sgd(task, topology, optim, run, cfg.async_local_sgd).run()


def global_steps_within(
    method: Method | str,
    topology: Topology,
    n_bytes: int,
    time_s: float,
    configs: MethodConfigs | None = None,
) -> float:
    """Global steps of tokens (every worker's batch once) `method` hands out in `time_s` simulated seconds,
    from the time model alone (no training): how long its learning-rate schedule must be to end at a cap.

    Lock-step methods complete whole rounds; an asynchronous worker i cycles tasks of H_i steps that
    last `Topology.task_time`, so the methods' token rates differ by the workers' speeds, not by chance.
    """
    method = Method(method)
    cfg = configs or MethodConfigs()
    topology = topology.for_model(n_bytes)
    places = topology.workers()
    n = len(places)
    if method is Method.SYNC:
        return float(_whole_rounds(time_s, topology.lockstep_round_time(n_bytes, [1] * n)))
    if method is Method.DILOCO:
        hs = [
            local_steps_for(cfg.diloco.local_steps, p.relative_speed, cfg.diloco.speed_scaled) for p in places
        ]
        return _whole_rounds(time_s, topology.lockstep_round_time(n_bytes, hs)) * sum(hs) / n
    if method is Method.HALOS:
        h, scaled = cfg.halos.local_steps, cfg.halos.speed_scaled
        servers = [p.region for p in places]
    else:
        h, scaled = cfg.async_local_sgd.local_steps, cfg.async_local_sgd.speed_scaled
        servers = [cfg.async_local_sgd.server_region] * n
    rate = 0.0  # local steps per simulated second, all workers
    for p, r in zip(places, servers, strict=True):
        hi = local_steps_for(h, p.relative_speed, scaled)
        rate += hi / topology.task_time(n_bytes, p, r, hi)
    return time_s * rate / n


def _whole_rounds(time_s: float, round_s: float) -> int:
    """Rounds of `round_s` that end by `time_s`; a cap of exactly k rounds (k * round_s) counts k despite rounding."""
    return math.floor(time_s / round_s * (1 + 1e-12))
