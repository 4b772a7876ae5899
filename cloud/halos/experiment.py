"""One simulated run of any method of the HALoS comparison (arXiv 2506.04531 Sec. 5), by name."""

from __future__ import annotations

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
from tether.cloud.halos.topology import Topology
from tether.cloud.halos.workload import LMTask

__all__ = ["Method", "MethodConfigs", "simulate"]


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
