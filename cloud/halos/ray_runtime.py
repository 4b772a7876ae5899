"""HALoS (arXiv 2506.04531) deployed on Ray: every worker, local server and the global server is an actor.

The actors run the same `Worker`, `LocalServer` and `GlobalServer` as the simulator. Each message
waits `time_scale` x the topology's link time before it is delivered, and a worker task lasts at
least `time_scale` x its simulated compute time, so one machine can emulate the geography; on a real
multi-region cluster set `time_scale=0` and let the network be the delay. A local server drives its
region's workers; when a worker actor dies it starts a replacement and carries on.

Differences from the simulator, by necessity: message order follows real time, not a virtual
clock, so runs are not bit-reproducible; a worker's place on the learning-rate schedule is
estimated from its own region's progress (regions do not share a counter).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import ray
import torch
from ray.exceptions import ActorUnavailableError, GetTimeoutError, RayActorError

from tether.cloud.halos.config import HalosConfig, RunConfig, WorkerOptimConfig, WorkloadConfig
from tether.cloud.halos.servers import GlobalServer, LocalServer, Push
from tether.cloud.halos.topology import Topology, WorkerPlace, local_steps_for
from tether.cloud.halos.worker import Worker
from tether.cloud.halos.workload import LMTask
from tether.settings import settings

__all__ = ["RayHalos", "RayHalosResult", "connect"]


def connect(num_cpus: int = 2, object_store_mb: int = 128) -> bool:
    """Join the Ray cluster at `settings().ray_address`, or start a local one when it is empty.

    Returns True when this call started Ray (the caller then owns `ray.shutdown()`).
    """
    if ray.is_initialized():
        return False
    address = settings().ray_address or None
    if address:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    else:
        ray.init(
            num_cpus=num_cpus,
            include_dashboard=False,
            object_store_memory=object_store_mb * 1024 * 1024,
            log_to_driver=False,
        )
    return True


@ray.remote
class WorkerActor:
    """One worker process: `run(theta, start_step, n_steps)` -> (pseudo_grad, steps, loss)."""

    def __init__(
        self, worker_id: int, workload: WorkloadConfig, optim: WorkerOptimConfig, seed: int, incarnation: int
    ) -> None:
        self.worker = Worker(worker_id, LMTask(workload), optim, seed, incarnation)

    def ready(self) -> int:
        """Answers once the actor is constructed (its model built, its data loaded)."""
        return self.worker.worker_id

    def run(self, theta: torch.Tensor, start_step: float, n_steps: int) -> tuple[torch.Tensor, int, float]:
        r = self.worker.run(theta, start_step, n_steps)
        return r.pseudo_grad, r.steps, r.loss


@ray.remote
class GlobalServerActor:
    """The global parameter server; `push` returns the new global model to the sending region."""

    def __init__(self, region: int, theta0: torch.Tensor, cfg: HalosConfig) -> None:
        self.server = GlobalServer(region, theta0, cfg.global_opt)

    def push(self, push: Push) -> torch.Tensor:
        return self.server.receive(push)

    def model(self) -> torch.Tensor:
        return self.server.theta.clone()

    def steps(self) -> int:
        return self.server.stats.steps

    def updates(self) -> int:
        return self.server.stats.updates


@dataclass(frozen=True)
class _Spec:
    workload: WorkloadConfig
    optim: WorkerOptimConfig
    halos: HalosConfig
    topology: Topology
    seed: int
    time_scale: float
    worker_num_cpus: float
    task_timeout_s: float


@ray.remote
class LocalServerActor:
    """A region's parameter server and the driver of its workers (an asyncio actor: one task per worker)."""

    def __init__(
        self,
        region: int,
        places: list[WorkerPlace],
        theta0: torch.Tensor,
        spec: _Spec,
        global_server: ray.actor.ActorHandle,
    ) -> None:
        self.spec, self.places, self.gps = spec, places, global_server
        cfg = spec.halos
        self.server = LocalServer(region, region, theta0, cfg.local_opt, cfg.push_every, cfg.merge_alpha)
        self.local_steps = cfg.local_steps
        self.workers = {p.worker_id: self._spawn(p, 0) for p in places}
        self.incarnation = dict.fromkeys(self.workers, 0)
        self.replacements = 0
        self.dispensed = 0
        self.stopped = False
        self._tasks: list[asyncio.Task] = []

    def _spawn(self, place: WorkerPlace, incarnation: int) -> ray.actor.ActorHandle:
        s = self.spec
        return WorkerActor.options(num_cpus=s.worker_num_cpus).remote(
            place.worker_id, s.workload, s.optim, s.seed, incarnation
        )

    async def _link(self, src: int, dst: int) -> None:
        delay = self.spec.time_scale * self.spec.topology.comm_time(4 * self.server.theta.numel(), src, dst)
        if delay > 0:
            await asyncio.sleep(delay)

    async def start(self) -> None:
        """Wait until every worker actor is up, then set each going (returns at once after that)."""
        await asyncio.gather(*(w.ready.remote() for w in self.workers.values()))
        self._tasks = [asyncio.create_task(self._drive(p)) for p in self.places]

    async def _drive(self, place: WorkerPlace) -> None:
        topo, region = self.spec.topology, self.server.region
        while not self.stopped:
            theta, version = self.server.dispatch()
            n = local_steps_for(self.local_steps, place.relative_speed, self.spec.halos.speed_scaled)
            start_step = self.dispensed / len(self.places)  # this region's progress, in global steps
            self.dispensed += n
            began = time.monotonic()
            await self._link(region, place.region)
            try:
                ref = self.workers[place.worker_id].run.remote(theta, start_step, n)
                pseudo_grad, steps, loss = await asyncio.wait_for(ref, self.spec.task_timeout_s)
            except RayActorError:  # the actor died: replace it, hand the replacement a fresh task
                self._replace(place)
                continue
            except ActorUnavailableError:  # transient (e.g. a network blip): retry the task
                await asyncio.sleep(0.1)
                continue
            except (asyncio.TimeoutError, GetTimeoutError):  # hung: kill and replace
                ray.kill(self.workers[place.worker_id], no_restart=True)
                self._replace(place)
                continue
            # emulate the worker's speed: a task lasts at least its simulated compute time
            floor = self.spec.time_scale * topo.compute_time(n, place.relative_speed)
            if (rest := floor - (time.monotonic() - began)) > 0:
                await asyncio.sleep(rest)
            await self._link(place.region, region)
            if self.stopped:
                return
            push = self.server.receive(pseudo_grad, steps, loss, version)
            if push is not None:
                self._tasks.append(asyncio.create_task(self._push(push)))

    def _replace(self, place: WorkerPlace) -> None:
        self.replacements += 1
        self.incarnation[place.worker_id] += 1
        self.workers[place.worker_id] = self._spawn(place, self.incarnation[place.worker_id])

    async def _push(self, push: Push) -> None:
        gps_region = self.spec.halos.global_region
        await self._link(self.server.region, gps_region)
        theta_g = await self.gps.push.remote(push)
        await self._link(gps_region, self.server.region)
        self.server.merge(theta_g)

    def set_knobs(
        self, local_steps: int | None = None, push_every: int | None = None, merge_alpha: float | None = None
    ) -> None:
        if local_steps is not None:
            self.local_steps = local_steps
        self.server.set_knobs(push_every=push_every, merge_alpha=merge_alpha)

    def worker_handle(self, worker_id: int) -> ray.actor.ActorHandle:
        return self.workers[worker_id]

    async def stop(self) -> dict[str, float]:
        self.stopped = True
        for t in self._tasks:
            t.cancel()
        for handle in self.workers.values():
            ray.kill(handle, no_restart=True)
        return self.stats()

    def stats(self) -> dict[str, float]:
        st = self.server.stats
        return {
            "updates": st.updates,
            "steps": st.steps,
            "pushes": st.pushes,
            "merges": st.merges,
            "staleness_mean": st.staleness_mean,
            "replacements": self.replacements,
        }


@dataclass
class RayHalosResult:
    """What a Ray run did: validation loss before and after, work done, worker replacements."""

    initial_loss: float
    final_loss: float
    global_steps: float  # local steps folded into the global model / number of workers
    wall_seconds: float
    servers: list[dict[str, float]]

    @property
    def replacements(self) -> int:
        return int(sum(s["replacements"] for s in self.servers))


class RayHalos:
    """A HALoS deployment on Ray. `start()`, then `wait(budget_steps)`, then `stop()`; or `train(...)`."""

    def __init__(
        self,
        workload: WorkloadConfig,
        topology: Topology,
        optim: WorkerOptimConfig,
        halos: HalosConfig,
        run: RunConfig,
        *,
        time_scale: float = 1.0,
        worker_num_cpus: float = 0.0,
        task_timeout_s: float = 600.0,
    ) -> None:
        topology.check_region(halos.global_region, "HalosConfig.global_region")
        if time_scale < 0:
            raise ValueError(f"time_scale >= 0 must hold, but got {time_scale}")
        self.task = LMTask(workload)
        self.run_cfg = run
        self.topology = topology
        self.spec = _Spec(
            workload, optim, halos, topology, run.seed, time_scale, worker_num_cpus, task_timeout_s
        )
        self.n_workers = len(topology.workers())
        self.theta0 = self.task.init_theta(run.seed)
        self.gps = None
        self.servers: list = []

    def start(self) -> None:
        """Create the actors and set every worker going."""
        theta0 = ray.put(self.theta0)
        self.gps = GlobalServerActor.options(num_cpus=0).remote(
            self.spec.halos.global_region, theta0, self.spec.halos
        )
        places = self.topology.workers()
        self.servers = [
            LocalServerActor.options(num_cpus=0, max_concurrency=64).remote(
                r, [p for p in places if p.region == r], theta0, self.spec, self.gps
            )
            for r in range(self.topology.n_regions)
        ]
        ray.get([s.start.remote() for s in self.servers])

    def global_steps(self) -> float:
        return ray.get(self.gps.steps.remote()) / self.n_workers

    def telemetry(self) -> dict[str, float]:
        """The service's `halos.*` metrics, read from the actors."""
        stats = ray.get([s.stats.remote() for s in self.servers], timeout=10)
        out = {
            "halos.global_steps": self.global_steps(),
            "halos.global.updates": ray.get(self.gps.updates.remote(), timeout=10),
        }
        for r, st in enumerate(stats):
            for key in ("updates", "staleness_mean", "replacements"):
                out[f"halos.server{r}.{key}"] = st[key]
        return out

    def kill_worker(self, worker_id: int) -> None:
        """Kill a worker actor, as a crash would (for tests and drills)."""
        region = self.topology.workers()[worker_id].region
        ray.kill(ray.get(self.servers[region].worker_handle.remote(worker_id)), no_restart=True)

    def set_knobs(self, **knobs: float | int | None) -> None:
        ray.get([s.set_knobs.remote(**knobs) for s in self.servers])

    def wait(self, budget_steps: float, timeout_s: float = 600.0, poll_s: float = 0.2) -> None:
        """Block until the global model has absorbed `budget_steps` global steps of work."""
        deadline = time.monotonic() + timeout_s
        while self.global_steps() < budget_steps:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the global server reached {self.global_steps():.1f} of {budget_steps} global steps "
                    f"in {timeout_s} s; raise the timeout or lower the budget"
                )
            time.sleep(poll_s)

    def stop(self) -> list[dict[str, float]]:
        """Stop every driver and worker; the servers' counters."""
        stats = ray.get([s.stop.remote() for s in self.servers])
        for handle in [*self.servers, self.gps]:
            ray.kill(handle, no_restart=True)
        return stats

    def train(self, timeout_s: float = 600.0) -> RayHalosResult:
        """start, wait for the run's budget, stop; evaluates the global model before and after."""
        t0 = time.monotonic()
        initial = self.task.evaluate(self.theta0)
        self.start()
        try:
            self.wait(self.run_cfg.budget_steps, timeout_s)
            theta = ray.get(self.gps.model.remote())
            steps = self.global_steps()
        finally:
            stats = self.stop()
        return RayHalosResult(initial, self.task.evaluate(theta), steps, time.monotonic() - t0, stats)
