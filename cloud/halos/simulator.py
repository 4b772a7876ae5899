"""Discrete-event simulation of HALoS (arXiv 2506.04531) and Async Local-SGD (arXiv 2401.09135) on a
virtual clock: real training steps, simulated time.

A worker's task takes  comm(server -> worker) + H_i * step_time / s_i + comm(worker -> server)  seconds
of virtual time; a push and the global model's return each take one link's comm time. Events at the
same virtual time run in the order they were scheduled, and every random stream is seeded, so a run
is a function of its seed. A task's model is fixed at dispatch, so its real steps may run any time
before its completion event: when a completion needs a result, every task dispatched and not yet
computed runs then, together (`WorkerPool`: one batched op for all of them), and tasks that would
finish after the run ends cost nothing.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from tether.cloud.halos.config import AsyncLocalSGDConfig, HalosConfig, RunConfig, WorkerOptimConfig
from tether.cloud.halos.curve import Curve, Recorder
from tether.cloud.halos.replicas import Job, WorkerPool
from tether.cloud.halos.servers import GlobalServer, LocalServer, Push
from tether.cloud.halos.topology import Topology, WorkerPlace, local_steps_for
from tether.cloud.halos.worker import WorkerResult
from tether.cloud.halos.workload import LMTask

__all__ = ["EventLoop", "HierarchySim"]


class EventLoop:
    """A virtual clock and a queue of callbacks ordered by (time, scheduling order)."""

    def __init__(self) -> None:
        self.now = 0.0
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()

    def at(self, delay: float, fn: Callable[[], None]) -> None:
        """Run `fn` `delay` virtual seconds from now."""
        heapq.heappush(self._queue, (self.now + delay, next(self._order), fn))

    def next_time(self) -> float | None:
        """The time of the next event; None when nothing is left."""
        return self._queue[0][0] if self._queue else None

    def step(self) -> bool:
        """Advance to the next event and run it; False when nothing is left."""
        if not self._queue:
            return False
        self.now, _, fn = heapq.heappop(self._queue)
        fn()
        return True


@dataclass
class _Task:
    place: WorkerPlace
    server: LocalServer
    theta: torch.Tensor
    version: int
    start_step: float
    n_steps: int
    result: WorkerResult | None = None  # computed lazily, with the other pending tasks


class HierarchySim:
    """Workers -> local servers (-> one global server), simulated. Build with `halos(...)` or `async_local_sgd(...)`.

    `run()` trains to the token budget or the time cap and returns the validation curve of the model of
    record (the global server's, or the lone server's). `step()` processes one event, for callers that interleave
    (the bus service); `set_knobs` changes H, K and alpha mid-run.
    """

    def __init__(
        self,
        method: str,
        task: LMTask,
        topology: Topology,
        optim: WorkerOptimConfig,
        run: RunConfig,
        *,
        local_steps: int,
        speed_scaled: bool,
        servers: list[LocalServer],
        server_of: list[int],
        global_server: GlobalServer | None,
    ) -> None:
        # compute time and latency rescaled to this model's bytes (a no-op for a topology of this model)
        topology = topology.for_model(task.n_bytes)
        self.task, self.topology, self.run_cfg = task, topology, run
        self.places = topology.workers()
        self.pool = WorkerPool(len(self.places), task, optim, run.seed)
        self._pending: list[_Task] = []  # dispatched, steps not yet run
        self.servers, self.server_of, self.global_server = servers, server_of, global_server
        self.local_steps, self.speed_scaled = local_steps, speed_scaled
        self.loop = EventLoop()
        self.curve = Curve(method, run.seed)
        self.recorder = Recorder(self.curve, task, run, len(self.places))
        self._dispensed = 0  # local steps handed out so far: positions workers on the lr schedule
        self._record_steps = 0  # local steps folded into the model of record
        self.done = False
        self._started = False

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def halos(
        cls, task: LMTask, topology: Topology, optim: WorkerOptimConfig, run: RunConfig, cfg: HalosConfig
    ) -> HierarchySim:
        topology.check_region(cfg.global_region, "HalosConfig.global_region")
        theta0 = task.init_theta(run.seed)
        servers = [
            LocalServer(r, r, theta0, cfg.local_opt, cfg.push_every, cfg.merge_alpha)
            for r in range(topology.n_regions)
        ]
        server_of = [p.region for p in topology.workers()]
        gps = GlobalServer(cfg.global_region, theta0, cfg.global_opt)
        return cls(
            "halos",
            task,
            topology,
            optim,
            run,
            local_steps=cfg.local_steps,
            speed_scaled=cfg.speed_scaled,
            servers=servers,
            server_of=server_of,
            global_server=gps,
        )

    @classmethod
    def async_local_sgd(
        cls,
        task: LMTask,
        topology: Topology,
        optim: WorkerOptimConfig,
        run: RunConfig,
        cfg: AsyncLocalSGDConfig,
    ) -> HierarchySim:
        topology.check_region(cfg.server_region, "AsyncLocalSGDConfig.server_region")
        theta0 = task.init_theta(run.seed)
        server = LocalServer(0, cfg.server_region, theta0, cfg.server_opt, push_every=None)
        return cls(
            "async_local_sgd",
            task,
            topology,
            optim,
            run,
            local_steps=cfg.local_steps,
            speed_scaled=cfg.speed_scaled,
            servers=[server],
            server_of=[0] * len(topology.workers()),
            global_server=None,
        )

    # -- knobs and telemetry --------------------------------------------------------------------

    def set_knobs(
        self,
        *,
        local_steps: int | None = None,
        push_every: int | None = None,
        merge_alpha: float | None = None,
    ) -> None:
        """Change H (next dispatch), K and alpha (next update) while running."""
        if local_steps is not None:
            if local_steps < 1:
                raise ValueError(f"H (local_steps) >= 1 must hold, but got {local_steps}")
            self.local_steps = local_steps
        for s in self.servers:
            s.set_knobs(push_every=push_every, merge_alpha=merge_alpha)

    def telemetry(self) -> dict[str, float]:
        """Loss, staleness and updates per server, under `halos.*` names."""
        out = {
            "halos.sim_time_s": self.loop.now,
            "halos.global_steps": self._record_steps / len(self.places),
        }
        if self.curve.val_loss:
            out["halos.val_loss"] = self.curve.val_loss[-1]
        for s in self.servers:
            p = f"halos.server{s.server_id}"
            out[f"{p}.updates"] = s.stats.updates
            out[f"{p}.staleness_mean"] = s.stats.staleness_mean
            out[f"{p}.staleness_max"] = s.stats.staleness_max
            if s.stats.recent_losses:
                out[f"{p}.train_loss"] = sum(s.stats.recent_losses) / len(s.stats.recent_losses)
        if self.global_server is not None:
            out["halos.global.updates"] = self.global_server.stats.updates
        return out

    # -- the simulation -------------------------------------------------------------------------

    def start(self) -> None:
        """Evaluate the initial model and hand every worker its first task."""
        self._started = True
        self._observe(self._record_theta())
        self._schedule_tick()
        for place in self.places:
            self._dispatch(place)

    def step(self) -> bool:
        """Process one event; False once the run is over (token budget spent or time cap reached)."""
        if not self._started:
            self.start()
        if self.done:
            return False
        nxt = self.loop.next_time()
        if nxt is not None and nxt > self.recorder.cap:
            self.loop.now = self.recorder.cap
            self.recorder.finish_at_cap(self._record_steps, self._record_theta())
            self.done = True
        elif not self.loop.step():
            self.done = True
        return not self.done

    def run(self) -> Curve:
        """Train to the token budget or the time cap; the curve of the model of record."""
        t0, c0 = time.perf_counter(), time.process_time()
        while self.step():
            pass
        self.curve.real_seconds = time.perf_counter() - t0
        self.curve.cpu_seconds = time.process_time() - c0
        self.curve.stats = self.telemetry()
        return self.curve

    def _record_theta(self) -> torch.Tensor:
        return self.global_server.theta if self.global_server is not None else self.servers[0].theta

    def _observe(self, theta: torch.Tensor) -> None:
        if self.recorder.observe(self.loop.now, self._record_steps, theta):
            self.done = True

    def _schedule_tick(self) -> None:
        """On the time cadence, an event at the next evaluation time, so points fall exactly on it."""
        due = self.recorder.next_due_time()
        if due is not None and due <= self.recorder.cap:
            self.loop.at(due - self.loop.now, self._on_tick)

    def _on_tick(self) -> None:
        if self.done:
            return
        self._observe(self._record_theta())
        self._schedule_tick()

    def _dispatch(self, place: WorkerPlace) -> None:
        server = self.servers[self.server_of[place.worker_id]]
        theta, version = server.dispatch()
        n = local_steps_for(self.local_steps, place.relative_speed, self.speed_scaled)
        task = _Task(place, server, theta, version, self._dispensed / len(self.places), n)
        self._dispensed += n
        self._pending.append(task)
        duration = self.topology.task_time(self.task.n_bytes, place, server.region, n)
        self.loop.at(duration, lambda: self._on_worker_done(task))

    def _on_worker_done(self, task: _Task) -> None:
        if self.done:
            return
        if task.result is None:
            self._run_pending()
        res = task.result
        assert res is not None
        server = task.server
        push = server.receive(res.pseudo_grad, res.steps, res.loss, task.version)
        if self.global_server is None:
            self._record_steps += res.steps
            self._observe(server.theta)
        elif push is not None:
            delay = self.topology.comm_time(self.task.n_bytes, server.region, self.global_server.region)
            self.loop.at(delay, lambda: self._on_push(server, push))
        if not self.done:
            self._dispatch(task.place)

    def _on_push(self, server: LocalServer, push: Push) -> None:
        if self.done:
            return
        gps = self.global_server
        theta_g = gps.receive(push)
        self._record_steps += push.steps
        self._observe(gps.theta)
        delay = self.topology.comm_time(self.task.n_bytes, gps.region, server.region)
        self.loop.at(delay, lambda: server.merge(theta_g))

    def _run_pending(self) -> None:
        """Run the steps of every dispatched task not yet computed, in one batch of replicas."""
        tasks, self._pending = self._pending, []
        jobs = [Job(t.place.worker_id, t.theta, t.start_step, t.n_steps) for t in tasks]
        for t, res in zip(tasks, self.pool.run(jobs), strict=True):
            t.result = res
