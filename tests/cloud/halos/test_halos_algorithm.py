"""HALoS's algorithm and simulator: the single-server reduction (numerically), determinism, the
optimizers against torch, the topology's time model, and configuration errors."""

from __future__ import annotations

import math

import pytest
import torch

from tether.cloud.halos import (
    DEFAULT_TOPOLOGY,
    AsyncLocalSGDConfig,
    DelayedNesterov,
    DelayedNesterovConfig,
    DiLoCoConfig,
    HalosConfig,
    HalosConfigError,
    HierarchySim,
    LMTask,
    MethodConfigs,
    ModelConfig,
    RunConfig,
    Topology,
    Worker,
    WorkerOptimConfig,
    WorkloadConfig,
    local_steps_for,
    simulate,
)
from tether.cloud.halos.optim import NesterovSGD

TINY = WorkloadConfig(model=ModelConfig(seq_len=16, d_model=16, n_layer=1, n_head=2), val_windows=8)
OPTIM = WorkerOptimConfig(lr=3e-3, warmup_steps=2, total_steps=40)


@pytest.fixture(scope="module")
def task() -> LMTask:
    return LMTask(TINY)


def _dn(theta, g, state, lr, beta, n):
    """Delayed Nesterov written out from arXiv 2401.09135 (independent of the library code)."""
    state["t"] += 1
    state["buf"] = state["buf"] + g
    eta = lr * n
    if state["t"] % n == 0:
        state["m"] = beta * state["m"] + state["buf"] / n
        state["buf"] = torch.zeros_like(g)
        return theta - eta * (beta * state["m"] + g / n)
    return theta - eta * g / n


def _new_state(p):
    return {"t": 0, "m": torch.zeros(p), "buf": torch.zeros(p)}


def test_one_region_one_worker_no_delay_is_the_single_server_update(task: LMTask) -> None:
    h, updates = 3, 7
    local = DelayedNesterovConfig(lr=0.2, momentum=0.9, buffer=4)
    cfg = HalosConfig(local_steps=h, push_every=10_000, local_opt=local)  # never pushes
    run = RunConfig(budget_steps=h * updates, eval_every=1000, seed=5)
    sim = HierarchySim.halos(task, Topology.single(1), OPTIM, run, cfg)
    # drive until the local server has applied `updates` deltas
    sim.start()
    while sim.servers[0].version < updates:
        assert sim.step()

    # expected: theta <- DN(theta, worker(theta)) with the worker's own data stream and lr schedule
    worker = Worker(0, task, OPTIM, seed=5)
    theta = task.init_theta(5)
    state = _new_state(theta.numel())
    for u in range(updates):
        g = worker.run(theta.clone(), start_step=u * h, n_steps=h).pseudo_grad
        theta = _dn(theta, g, state, local.lr, local.momentum, local.buffer)
    assert torch.allclose(sim.servers[0].theta, theta, atol=2e-5, rtol=0)  # float32 summation order differs
    assert not torch.equal(theta, task.init_theta(5))  # it trained
    assert sim.servers[0].stats.staleness_max == 0  # one worker, nothing stale


def test_one_region_one_worker_push_and_merge_sequence(task: LMTask) -> None:
    h, k, alpha, updates = 2, 2, 0.5, 6
    local = DelayedNesterovConfig(lr=0.2, momentum=0.9, buffer=2)
    glob = DelayedNesterovConfig(lr=0.15, momentum=0.5, buffer=2)
    cfg = HalosConfig(local_steps=h, push_every=k, merge_alpha=alpha, local_opt=local, global_opt=glob)
    run = RunConfig(budget_steps=h * updates, eval_every=1000, seed=2)
    sim = HierarchySim.halos(task, Topology.single(1), OPTIM, run, cfg)
    sim.run()

    worker = Worker(0, task, OPTIM, seed=2)
    theta_l = task.init_theta(2)
    theta_g, snap, start = theta_l.clone(), theta_l.clone(), theta_l.clone()
    ls, gs = _new_state(theta_l.numel()), _new_state(theta_l.numel())
    for u in range(updates):
        g = worker.run(start, start_step=u * h, n_steps=h).pseudo_grad
        theta_l = _dn(theta_l, g, ls, local.lr, local.momentum, local.buffer)
        start = theta_l.clone()  # the worker is re-dispatched before the global model returns
        if (u + 1) % k == 0:
            theta_g = _dn(theta_g, snap - theta_l, gs, glob.lr, glob.momentum, glob.buffer)
            theta_l = (1 - alpha) * theta_l + alpha * theta_g
            snap = theta_l.clone()
    assert torch.allclose(
        sim.global_server.theta, theta_g, atol=2e-5, rtol=0
    )  # float32 summation order differs
    assert sim.global_server.stats.updates == updates // k
    assert sim.curve.steps[-1] == h * updates


def test_simulator_is_deterministic_for_a_seed(task: LMTask) -> None:
    topo = Topology(
        bandwidth_gbps=((100.0, 0.2), (0.2, 100.0)),
        latency_s=((0.0005, 0.05), (0.05, 0.0005)),
        speeds=((1.0, 0.4), (0.7, 0.25)),
    )
    cfg = HalosConfig(local_steps=4, push_every=3)
    run = RunConfig(budget_steps=16, eval_every=4, seed=11)
    sim1 = HierarchySim.halos(task, topo, OPTIM, run, cfg)
    sim2 = HierarchySim.halos(task, topo, OPTIM, run, cfg)
    a, b = sim1.run(), sim2.run()
    assert len(a.times) >= 4
    assert a.times == b.times and a.val_loss == b.val_loss and a.steps == b.steps
    assert torch.equal(sim1.global_server.theta, sim2.global_server.theta)
    assert sim1.telemetry() == sim2.telemetry()
    assert sim1.telemetry()["halos.server1.staleness_max"] > 0  # two workers share a server
    other = HierarchySim.halos(task, topo, OPTIM, RunConfig(budget_steps=16, eval_every=4, seed=12), cfg)
    other.run()
    assert not torch.equal(other.global_server.theta, sim1.global_server.theta)


@pytest.mark.parametrize("method", ["sync", "diloco", "async_local_sgd", "halos"])
def test_every_method_trains_on_the_virtual_clock(task: LMTask, method: str) -> None:
    topo = Topology(((100.0, 0.5), (0.5, 100.0)), ((0.0, 0.02), (0.02, 0.0)), ((1.0, 0.5), (0.8, 0.3)))
    # short horizons: H = 4 everywhere so that every method takes several server steps in the budget
    configs = MethodConfigs(
        halos=HalosConfig(local_steps=4, push_every=4),
        diloco=DiLoCoConfig(local_steps=4),
        async_local_sgd=AsyncLocalSGDConfig(local_steps=4, server_opt=DelayedNesterovConfig(0.1, 0.9, 4)),
    )
    curve = simulate(method, task, topo, OPTIM, RunConfig(budget_steps=40, eval_every=10, seed=0), configs)
    assert curve.steps[-1] >= 40
    assert curve.times == sorted(curve.times) and curve.final_time > 0
    assert curve.final_loss < curve.val_loss[0] - 0.3  # from ~ln(256) = 5.5 nats down


def test_delayed_nesterov_with_buffer_one_is_torch_nesterov() -> None:
    gen = torch.Generator().manual_seed(0)
    theta = torch.randn(50, generator=gen)
    ref = torch.nn.Parameter(theta.clone())
    sgd = torch.optim.SGD([ref], lr=0.3, momentum=0.8, nesterov=True)
    dn = DelayedNesterov(50, DelayedNesterovConfig(lr=0.3, momentum=0.8, buffer=1))
    outer = NesterovSGD(50, lr=0.3, momentum=0.8)
    theta2 = theta.clone()
    for _ in range(5):
        g = torch.randn(50, generator=gen)
        ref.grad = g.clone()
        sgd.step()
        dn.step(theta, g)
        outer.step(theta2, g)
    assert torch.allclose(theta, ref.detach(), atol=1e-6)
    assert torch.allclose(theta2, ref.detach(), atol=1e-6)


def test_topology_time_model() -> None:
    topo = Topology.from_yaml(DEFAULT_TOPOLOGY)
    places = topo.workers()
    assert topo.n_regions == 4 and len(places) == 16
    assert max(p.relative_speed for p in places) == 1.0
    assert min(p.speed for p in places) == pytest.approx(0.107)
    # 1e9 bytes over 0.117 Gbps plus 120 ms latency
    assert topo.comm_time(10**9, 1, 3) == pytest.approx(0.120 + 8 / 0.117)
    slowest = min(places, key=lambda p: p.speed)
    assert topo.compute_time(2, slowest.relative_speed) == pytest.approx(2 * 0.238391 * 0.907 / 0.107)
    assert [local_steps_for(8, s, True) for s in (1.0, 0.5, 0.01)] == [8, 4, 1]
    assert local_steps_for(8, 0.01, False) == 8
    bw, _ = topo.best_ring()
    assert bw == pytest.approx(0.127)  # region 3's two best links bound every ring
    assert topo.allreduce_time(10**6) > topo.comm_time(10**6, 0, 2)


def test_topology_for_model_keeps_the_reference_regime(task: LMTask) -> None:
    ref = Topology.default()
    assert ref.step_time_bytes == 70_426_624 * 4  # Pythia-70M in float32, the reference's 238 ms step
    n = task.n_bytes
    ours = ref.for_model(n)
    f = n / ref.step_time_bytes
    assert ours.step_time_s == pytest.approx(ref.step_time_s * f)
    assert ours.latency_s[1][3] == pytest.approx(0.120 * f)
    assert ours.bandwidth_gbps == ref.bandwidth_gbps and ours.speeds == ref.speeds
    # a transfer over the slowest link costs as many steps of the fastest worker as Pythia-70M's does
    steps_ours = ours.comm_time(n, 1, 3) / ours.step_time_s
    steps_ref = ref.comm_time(int(ref.step_time_bytes), 1, 3) / ref.step_time_s
    assert steps_ours == pytest.approx(steps_ref) and steps_ref == pytest.approx(81.3, abs=0.1)
    assert ours.for_model(n) == ours  # already at this model's scale
    assert Topology.single(1).for_model(n) == Topology.single(1)  # no reference model: unchanged
    # a simulation handed the committed topology runs on the rescaled clock
    curve = simulate("sync", task, ref, OPTIM, RunConfig(budget_steps=2, eval_every=1))
    assert curve.final_time == pytest.approx(2 * ours.lockstep_round_time(n, [1] * 16))
    assert curve.final_time < 0.01 * 2 * ref.lockstep_round_time(n, [1] * 16)
    with pytest.raises(HalosConfigError, match="step_time_bytes"):
        Topology(((1.0,),), ((0.0,),), ((1.0,),), step_time_bytes=0.0)


def test_configuration_errors_state_rule_value_and_fix(tmp_path) -> None:
    with pytest.raises(HalosConfigError, match=r"merge_alpha.*got merge_alpha=0.0"):
        HalosConfig(merge_alpha=0.0)
    with pytest.raises(HalosConfigError, match="push_every"):
        HalosConfig(push_every=0)
    with pytest.raises(HalosConfigError, match="n_head"):
        ModelConfig(d_model=30, n_head=4)
    with pytest.raises(HalosConfigError, match="warmup_steps < total_steps"):
        WorkerOptimConfig(warmup_steps=10, total_steps=10)
    bad = tmp_path / "t.yaml"
    bad.write_text("bandwidth_gbps: [[1.0, 2.0]]\nworker_speeds: [[1.0]]\n")
    with pytest.raises(HalosConfigError, match=str(bad)):
        Topology.from_yaml(bad)
    with pytest.raises(HalosConfigError, match="region"):
        HierarchySim.halos(LMTask(TINY), Topology.single(1), OPTIM, RunConfig(), HalosConfig(global_region=3))
    with pytest.raises(ValueError, match="method must be one of"):
        simulate("gossip", LMTask(TINY), Topology.single(1), OPTIM, RunConfig())
    assert math.isinf(
        simulate(
            "sync", LMTask(TINY), Topology.single(1), OPTIM, RunConfig(budget_steps=2, eval_every=1)
        ).time_to_target(-1.0)
    )
