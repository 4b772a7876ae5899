"""HALoS on real Ray actors (a local Ray with 2 CPUs): one short deployment, in which a worker actor is
killed half-way. Checks that the run trains and that the dead worker is replaced while training goes on.
The deployment runs once per module (actor start-up dominates the cost); Ray is shut down after."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest

ray = pytest.importorskip("ray")
# actor start-up (a process per actor, each importing torch) dominates; generous on a loaded machine
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

from tether.cloud.halos import (  # noqa: E402
    HalosConfig,
    ModelConfig,
    RunConfig,
    Topology,
    WorkerOptimConfig,
    WorkloadConfig,
)
from tether.cloud.halos.ray_runtime import RayHalos, connect  # noqa: E402

WORKLOAD = WorkloadConfig(model=ModelConfig(seq_len=32, d_model=32, n_layer=1, n_head=2), val_windows=32)
OPTIM = WorkerOptimConfig(lr=3e-3, warmup_steps=2, total_steps=200)
# two regions, one worker each, a slow link between them (delays scaled down by time_scale)
TOPOLOGY = Topology(
    bandwidth_gbps=((100.0, 0.2), (0.2, 100.0)),
    latency_s=((0.0005, 0.05), (0.05, 0.0005)),
    speeds=((1.0,), (0.5,)),
)


@dataclass
class Outcome:
    initial_loss: float
    final_loss: float
    steps_at_kill: float
    final_steps: float
    updates_at_kill: float
    stats: list[dict[str, float]]


@pytest.fixture(scope="module")
def outcome() -> Outcome:
    started = connect(num_cpus=2, object_store_mb=100)
    try:
        dep = RayHalos(
            WORKLOAD,
            TOPOLOGY,
            OPTIM,
            HalosConfig(local_steps=4, push_every=2),
            RunConfig(seed=0),
            time_scale=0.01,
        )
        initial = dep.task.evaluate(dep.theta0)
        dep.start()  # returns once every actor is up
        try:
            dep.wait(20, timeout_s=120)
            steps_at_kill = dep.global_steps()
            updates_at_kill = ray.get(dep.servers[0].stats.remote())["updates"]
            dep.kill_worker(0)  # region 0's only worker: region 0 trains on only if it is replaced
            dep.wait(steps_at_kill + 20, timeout_s=120)
            deadline = time.monotonic() + 60
            while ray.get(dep.servers[0].stats.remote())["updates"] < updates_at_kill + 4:
                assert time.monotonic() < deadline, "region 0 made no progress after its worker died"
                time.sleep(0.1)
            theta = ray.get(dep.gps.model.remote())
            final_steps = dep.global_steps()
        finally:
            stats = dep.stop()
        return Outcome(initial, dep.task.evaluate(theta), steps_at_kill, final_steps, updates_at_kill, stats)
    finally:
        if started:
            ray.shutdown()


def test_ray_deployment_trains(outcome: Outcome) -> None:
    assert outcome.final_steps >= 40
    assert outcome.final_loss < outcome.initial_loss - 0.5, (outcome.initial_loss, outcome.final_loss)
    assert all(s["pushes"] >= 1 and s["merges"] >= 1 for s in outcome.stats)  # both levels worked


def test_dead_worker_actor_is_replaced_and_training_continues(outcome: Outcome) -> None:
    assert outcome.stats[0]["replacements"] == 1
    assert outcome.stats[1]["replacements"] == 0
    assert outcome.stats[0]["updates"] >= outcome.updates_at_kill + 4  # the replacement's deltas arrived
    assert outcome.final_steps >= outcome.steps_at_kill + 20
