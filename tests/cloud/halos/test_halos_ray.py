"""HALoS on real Ray actors (a local Ray, 2 CPUs): a short run trains, and a killed worker actor is
replaced while training goes on. Both tests share one Ray instance, shut down at the end."""

from __future__ import annotations

import time

import pytest

ray = pytest.importorskip("ray")

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
HALOS = HalosConfig(local_steps=4, push_every=2)


@pytest.fixture(scope="module")
def local_ray():
    started = connect(num_cpus=2, object_store_mb=100)
    yield
    if started:
        ray.shutdown()


def test_ray_deployment_trains(local_ray) -> None:
    run = RunConfig(budget_steps=40, seed=0)
    result = RayHalos(WORKLOAD, TOPOLOGY, OPTIM, HALOS, run, time_scale=0.01).train(timeout_s=90)
    assert result.global_steps >= 40
    assert result.final_loss < result.initial_loss - 0.5, (result.initial_loss, result.final_loss)
    assert all(s["pushes"] >= 1 and s["merges"] >= 1 for s in result.servers)
    assert result.replacements == 0


def test_dead_worker_actor_is_replaced_and_training_continues(local_ray) -> None:
    dep = RayHalos(WORKLOAD, TOPOLOGY, OPTIM, HALOS, RunConfig(seed=1), time_scale=0.01)
    dep.start()
    try:
        dep.wait(8, timeout_s=60)
        before = ray.get(dep.servers[0].stats.remote())
        dep.kill_worker(0)  # region 0's only worker
        dep.wait(dep.global_steps() + 16, timeout_s=60)
        # region 0 keeps updating only if its replacement worker trains
        deadline = time.monotonic() + 30
        while ray.get(dep.servers[0].stats.remote())["updates"] < before["updates"] + 4:
            assert time.monotonic() < deadline, "region 0 made no progress after its worker died"
            time.sleep(0.2)
    finally:
        stats = dep.stop()
    assert stats[0]["replacements"] == 1
    assert stats[1]["replacements"] == 0
