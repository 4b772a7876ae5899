"""HALoS (arXiv 2506.04531): hierarchical asynchronous local SGD with local and global parameter servers
across regions, its baselines, a discrete-event simulator and a Ray deployment.

The algorithm (`servers`, `optim`, `worker`; `replicas` steps many workers at once) has no clock and no I/O; `simulator` and `baselines` run
it on a virtual clock, `ray_runtime` on Ray actors; `service` puts it on the bus, `cli` on the command line.
"""

from tether.cloud.halos.config import (
    AsyncLocalSGDConfig,
    DelayedNesterovConfig,
    DiLoCoConfig,
    HalosConfig,
    HalosConfigError,
    ModelConfig,
    RunConfig,
    SyncConfig,
    WorkerOptimConfig,
    WorkloadConfig,
)
from tether.cloud.halos.curve import Curve
from tether.cloud.halos.experiment import Method, MethodConfigs, global_steps_within, simulate
from tether.cloud.halos.optim import DelayedNesterov
from tether.cloud.halos.replicas import Job, WorkerPool
from tether.cloud.halos.servers import GlobalServer, LocalServer, Push
from tether.cloud.halos.simulator import EventLoop, HierarchySim
from tether.cloud.halos.topology import DEFAULT_TOPOLOGY, Topology, local_steps_for
from tether.cloud.halos.worker import Worker, WorkerResult
from tether.cloud.halos.workload import LMTask

__all__ = [
    "DEFAULT_TOPOLOGY",
    "AsyncLocalSGDConfig",
    "Curve",
    "DelayedNesterov",
    "DelayedNesterovConfig",
    "DiLoCoConfig",
    "EventLoop",
    "GlobalServer",
    "HalosConfig",
    "HalosConfigError",
    "HierarchySim",
    "Job",
    "LMTask",
    "LocalServer",
    "Method",
    "MethodConfigs",
    "ModelConfig",
    "Push",
    "RunConfig",
    "SyncConfig",
    "Topology",
    "Worker",
    "WorkerOptimConfig",
    "WorkerPool",
    "WorkerResult",
    "WorkloadConfig",
    "global_steps_within",
    "local_steps_for",
    "simulate",
]
