"""The simulator's fast path and its time cap: k workers stepped together equal `Worker.run` one by one,
the batched forward equals `TinyGPT`, a run ends at its simulated-time cap, and `global_steps_within`
predicts the tokens each method consumes by then."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tether.cloud.halos import (
    AsyncLocalSGDConfig,
    DiLoCoConfig,
    HalosConfig,
    Job,
    LMTask,
    Method,
    MethodConfigs,
    ModelConfig,
    RunConfig,
    Topology,
    Worker,
    WorkerOptimConfig,
    WorkerPool,
    WorkloadConfig,
    global_steps_within,
    simulate,
)
from tether.cloud.halos.model import ParamLayout, get_flat, replica_loss

TINY = WorkloadConfig(
    model=ModelConfig(seq_len=16, d_model=16, n_layer=2, n_head=2), batch_size=2, val_windows=8
)
OPTIM = WorkerOptimConfig(lr=3e-3, warmup_steps=2, total_steps=40)
TOPO = Topology(((100.0, 0.5), (0.5, 100.0)), ((0.0, 0.02), (0.02, 0.0)), ((1.0, 0.5), (0.8, 0.3)))


@pytest.fixture(scope="module")
def task() -> LMTask:
    return LMTask(TINY)


def test_replica_loss_is_the_model_loss_per_replica(task: LMTask) -> None:
    models = [task.new_model(s) for s in (1, 2, 3)]
    layout = ParamLayout.of(models[0])
    rng = np.random.default_rng(0)
    batches = [task.batch(rng) for _ in models]
    theta = torch.stack([get_flat(m) for m in models])  # (3, P)
    got = replica_loss(
        theta, layout, torch.stack([b[0] for b in batches]), torch.stack([b[1] for b in batches])
    )
    want = torch.stack([m(x, y) for m, (x, y) in zip(models, batches, strict=True)]).detach()
    assert torch.allclose(got, want, atol=1e-5, rtol=0)
    assert layout.n_params == task.n_params
    assert (
        layout.decay_mask.sum() > 0 and layout.decay_mask.sum() < layout.n_params
    )  # matrices decay, not norms


def test_pool_steps_workers_together_as_each_would_alone(task: LMTask) -> None:
    pool = WorkerPool(3, task, OPTIM, seed=5)
    alone = [Worker(w, task, OPTIM, seed=5) for w in range(3)]
    thetas = [task.init_theta(5) + 0.01 * w for w in range(3)]
    # three rounds with different step counts, schedule positions and a worker left out of one call
    rounds = [
        [Job(0, thetas[0], 0, 4), Job(2, thetas[2], 1, 1), Job(1, thetas[1], 2.5, 3)],
        [Job(1, thetas[1], 6, 2), Job(0, thetas[0], 4, 5)],
        [Job(2, thetas[2], 9, 6), Job(0, thetas[0], 9, 1), Job(1, thetas[1], 8, 3)],
    ]
    for jobs in rounds:
        for job, res in zip(jobs, pool.run(jobs), strict=True):
            ref = alone[job.worker_id].run(job.theta.clone(), job.start_step, job.n_steps)
            assert res.worker_id == job.worker_id and res.steps == job.n_steps
            assert torch.allclose(res.pseudo_grad, ref.pseudo_grad, atol=2e-5, rtol=0)
            assert res.loss == pytest.approx(ref.loss, abs=1e-5)
            assert res.pseudo_grad.abs().max() > 1e-3  # it trained
    with pytest.raises(ValueError, match="one job per worker"):
        pool.run([Job(0, thetas[0], 0, 1), Job(0, thetas[0], 0, 1)])


@pytest.mark.parametrize("method", ["sync", "diloco", "async_local_sgd", "halos"])
def test_a_run_ends_at_its_time_cap_with_the_predicted_tokens(task: LMTask, method: str) -> None:
    configs = MethodConfigs(
        halos=HalosConfig(local_steps=4, push_every=2),
        diloco=DiLoCoConfig(local_steps=4),
        async_local_sgd=AsyncLocalSGDConfig(local_steps=4),
    )
    step = TOPO.lockstep_round_time(task.n_bytes, [1] * 4)
    cap = 30.5 * step  # not a multiple of any method's round
    run = RunConfig(budget_steps=10**9, seed=0, time_cap_s=cap, eval_every_s=cap / 5)
    curve = simulate(method, task, TOPO, OPTIM, run, configs)
    assert curve.final_time == pytest.approx(cap)
    assert curve.times == sorted(curve.times) and len(curve.times) == 6  # 0, 1/5 .. 4/5 of the cap, the cap
    due = [cap * k / 5 for k in range(1, 5)]
    if method in ("sync", "diloco"):  # lock-step: the first round that ends at or after each due time
        rnd = curve.stats.get("step_time_s", curve.stats.get("round_time_s"))
        assert all(d <= t < d + rnd for t, d in zip(curve.times[1:5], due, strict=True))
    else:  # events on the virtual clock at exactly the due times
        assert curve.times[1:5] == pytest.approx(due, rel=1e-9)
    predicted = global_steps_within(method, TOPO, task.n_bytes, cap, configs)
    if method == "sync":
        assert curve.steps[-1] == predicted == 30
    else:  # asynchronous: the tasks still in flight at the cap are handed out but not yet applied
        assert predicted - 4.0 <= curve.steps[-1] <= predicted + 1e-9
    assert curve.final_loss < curve.val_loss[0]


def test_faster_methods_get_more_tokens_within_a_cap(task: LMTask) -> None:
    topo = Topology.default().for_model(task.n_bytes)  # the reference's regime at this model's bytes
    cap = 2000 * topo.lockstep_round_time(task.n_bytes, [1] * 16)
    steps = {m: global_steps_within(m, topo, task.n_bytes, cap) for m in Method}
    assert steps[Method.SYNC] == 2000
    # sync waits for the slowest worker (speed 0.107 of the fastest) and an all-reduce over the slow
    # links every step; the asynchronous methods run every worker flat out
    assert steps[Method.HALOS] > 20 * steps[Method.SYNC]
    assert steps[Method.ASYNC_LOCAL_SGD] > 20 * steps[Method.SYNC]
    assert steps[Method.SYNC] < steps[Method.DILOCO] < steps[Method.HALOS]
    # Async Local-SGD's workers outside region 0 wait on slow links for every task; HALoS's workers
    # talk to their own region's server, so it turns tokens over much faster
    assert steps[Method.HALOS] > 1.5 * steps[Method.ASYNC_LOCAL_SGD]
    # handed the committed (Pythia-70M) topology, it rescales to this model itself
    assert {m: global_steps_within(m, Topology.default(), task.n_bytes, cap) for m in Method} == steps
