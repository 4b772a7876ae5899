"""HALoS (arXiv 2506.04531) on the bus: a node that trains (simulated, or on Ray) and publishes its progress.

Telemetry (1 Hz on `<ns>/halos/telemetry`, besides every node's own metrics):
    halos.val_loss                    nats/byte, last validation of the model of record
    halos.global_steps                global steps of work folded into the global model
    halos.sim_time_s                  virtual seconds (simulator backend)
    halos.server<r>.updates           worker deltas region r's local server applied
    halos.server<r>.staleness_mean    server versions between a task's dispatch and its delta's arrival
    halos.server<r>.staleness_max
    halos.server<r>.train_loss        workers' recent training loss (simulator backend)
    halos.global.updates              pushes the global server applied
Parameters (settable over the bus, bounds enforced): `K` (push every K updates), `alpha` (merge
weight of the global model), `H` (local steps of the fastest worker); read-only: `backend`,
`budget_steps`, `seed`, `topology`.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tether.bus import Node, Parameter, SetParametersResult
from tether.cloud.halos.config import HalosConfig, RunConfig, WorkerOptimConfig, WorkloadConfig
from tether.cloud.halos.simulator import HierarchySim
from tether.cloud.halos.topology import DEFAULT_TOPOLOGY, Topology
from tether.cloud.halos.workload import LMTask

__all__ = ["HalosNode", "main"]

_KNOBS = {"K": "push_every", "alpha": "merge_alpha", "H": "local_steps"}


class HalosNode(Node):
    """Trains HALoS in a background thread; knobs in, telemetry out. `close()` stops the training."""

    def __init__(
        self,
        *,
        workload: WorkloadConfig | None = None,
        optim: WorkerOptimConfig | None = None,
        halos: HalosConfig | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("namespace", "/cloud")
        super().__init__("halos", **kwargs)
        base = halos or HalosConfig()
        k = self.declare_parameter(
            "K",
            base.push_every,
            description="local server pushes to the global server every K worker updates",
            min=1,
            max=100_000,
        )
        a = self.declare_parameter(
            "alpha",
            base.merge_alpha,
            description="merge weight of the global model: theta_L <- (1 - alpha) theta_L + alpha theta_G",
            min=0.001,
            max=1.0,
        )
        h = self.declare_parameter(
            "H",
            base.local_steps,
            description="local steps of the fastest worker per task (others: ceil(H * speed))",
            min=1,
            max=100_000,
        )
        backend = self.declare_parameter(
            "backend", "sim", description="sim (virtual clock) or ray", choices=["sim", "ray"], read_only=True
        ).value
        budget = self.declare_parameter(
            "budget_steps", 2000, description="global steps to train", min=1, read_only=True
        ).value
        seed = self.declare_parameter("seed", 0, min=0, read_only=True).value
        topo_path = self.declare_parameter("topology", str(DEFAULT_TOPOLOGY), read_only=True).value
        halos_cfg = HalosConfig(
            local_steps=int(h.value),
            speed_scaled=base.speed_scaled,
            push_every=int(k.value),
            merge_alpha=float(a.value),
            local_opt=base.local_opt,
            global_opt=base.global_opt,
            global_region=base.global_region,
        )
        topology = Topology.from_yaml(Path(topo_path))
        workload = workload or WorkloadConfig()
        run = RunConfig(budget_steps=int(budget), eval_every=max(1, int(budget) // 40), seed=int(seed))
        optim = optim or WorkerOptimConfig(total_steps=int(budget), warmup_steps=max(1, int(budget) // 20))
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self.ray = None
        self.sim: HierarchySim | None = None
        if backend == "ray":
            from tether.cloud.halos.ray_runtime import RayHalos, connect

            self._owns_ray = connect()
            self.ray = RayHalos(workload, topology, optim, halos_cfg, run, time_scale=1.0)
            self.ray.start()
        else:
            self.sim = HierarchySim.halos(LMTask(workload), topology, optim, run, halos_cfg)
            self._thread = threading.Thread(target=self._train, name="halos-train", daemon=True)
            self._thread.start()
        self.add_on_set_parameters_callback(self._on_set)
        self.telemetry.add_source(self._metrics)

    def _train(self) -> None:
        try:
            while not self._stop.is_set():
                with self._lock:  # one event at a time, so knobs and telemetry see a consistent state
                    if not self.sim.step():
                        break
        except BaseException as err:  # reported in the log and kept for callers
            self.error = err
            self.get_logger().exception("HALoS training failed")

    def _metrics(self) -> dict[str, float]:
        if self.sim is not None:
            with self._lock:
                return self.sim.telemetry()
        return self.ray.telemetry()

    def _on_set(self, params: Sequence[Parameter]) -> SetParametersResult:
        knobs = {_KNOBS[p.name]: p.value for p in params if p.name in _KNOBS}
        if not knobs:
            return SetParametersResult(successful=True)
        try:
            if self.sim is not None:
                with self._lock:
                    self.sim.set_knobs(**knobs)
            else:
                self.ray.set_knobs(**knobs)
        except ValueError as err:
            return SetParametersResult(successful=False, reason=str(err))
        return SetParametersResult(successful=True)

    @property
    def done(self) -> bool:
        return self.sim.done if self.sim is not None else False

    def close(self) -> None:
        """Stop training (the thread, or the Ray actors) before the node goes."""
        self._stop.set()
        if self.sim is not None:
            self._thread.join(timeout=30)
        elif self.ray is not None:
            self.ray.stop()
            if self._owns_ray:
                import ray

                ray.shutdown()


def main(args: list[str] | None = None) -> None:
    """The `halos.trainer` node executable (ROS 2 arguments: `--ros-args -p K:=16 ...`)."""
    from tether.bus import run_node

    raise SystemExit(run_node(HalosNode, args))
