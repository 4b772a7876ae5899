"""`tether halos ...`: inspect the simulated geography, simulate a method, train on Ray, serve on the bus
(HALoS, arXiv 2506.04531)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from tether.cloud.halos.config import (
    AsyncLocalSGDConfig,
    DiLoCoConfig,
    HalosConfig,
    ModelConfig,
    RunConfig,
    WorkerOptimConfig,
    WorkloadConfig,
)
from tether.cloud.halos.topology import DEFAULT_TOPOLOGY, Topology, local_steps_for

app = typer.Typer(
    name="halos",
    help="HALoS: hierarchical asynchronous training across regions (simulated, or on Ray).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()

_TOPOLOGY = typer.Option(DEFAULT_TOPOLOGY, "--topology", help="Region matrix and worker speeds (YAML).")


def _workload(d_model: int, n_layer: int, seq_len: int, batch: int) -> WorkloadConfig:
    return WorkloadConfig(
        model=ModelConfig(seq_len=seq_len, d_model=d_model, n_layer=n_layer, n_head=max(1, d_model // 32)),
        batch_size=batch,
    )


@app.command("topology")
def topology_cmd(
    topology: Path = _TOPOLOGY,
    model_mb: float = typer.Option(1.75, help="Model size on the wire (MB) for the time columns."),
    h: int = typer.Option(8, "--h", help="HALoS's H (local steps of the fastest worker)."),
) -> None:
    """Print the bandwidth/latency matrix and what it costs: per-worker H_i and task time, all-reduce time."""
    n_bytes = int(model_mb * 1e6)
    topo = Topology.from_yaml(topology).for_model(n_bytes)  # compute and latency at this model's scale
    table = Table(title=f"links ({topo.source}): Gbps / one-way ms")
    table.add_column("from \\ to")
    for r in range(topo.n_regions):
        table.add_column(str(r))
    for a in range(topo.n_regions):
        table.add_row(
            str(a),
            *(
                f"{topo.bandwidth_gbps[a][b]:g} / {topo.latency_s[a][b] * 1e3:g}"
                for b in range(topo.n_regions)
            ),
        )
    console.print(table)
    workers = Table(
        title=f"workers (step {topo.step_time_s * 1e3:.4g} ms on the fastest, at this model size)"
    )
    for col in ("worker", "region", "speed", "relative", f"H_i (H={h})", "task compute ms"):
        workers.add_column(col)
    for p in topo.workers():
        hi = local_steps_for(h, p.relative_speed, True)
        workers.add_row(
            str(p.worker_id),
            str(p.region),
            f"{p.speed:g}",
            f"{p.relative_speed:.3f}",
            str(hi),
            f"{topo.compute_time(hi, p.relative_speed) * 1e3:.4g}",
        )
    console.print(workers)
    bw, lat = topo.best_ring()
    console.print(
        f"best inter-region ring: {bw:g} Gbps bottleneck, {lat * 1e3:g} ms; all-reduce of "
        f"{model_mb:g} MB: {topo.allreduce_time(n_bytes) * 1e3:.4g} ms"
    )


@app.command("simulate")
def simulate_cmd(
    method: str = typer.Option("halos", help="halos | sync | diloco | async_local_sgd"),
    budget: int = typer.Option(200, help="Global steps of tokens (sync's steps)."),
    seed: int = typer.Option(0),
    lr: float = typer.Option(3e-3, help="Workers' peak AdamW learning rate."),
    k: int = typer.Option(32, "--k", help="HALoS: push to the global server every K updates."),
    alpha: float = typer.Option(0.25, help="HALoS: merge weight of the global model."),
    h: int = typer.Option(8, "--h", help="HALoS: local steps of the fastest worker."),
    d_model: int = typer.Option(128),
    n_layer: int = typer.Option(2),
    seq_len: int = typer.Option(64),
    batch: int = typer.Option(1, help="Sequences per worker per local step."),
    topology: Path = _TOPOLOGY,
    out: Path | None = typer.Option(None, help="Write the curve as JSON here."),
) -> None:
    """Train one method on the virtual clock and print its validation curve."""
    from tether.cloud.halos.experiment import MethodConfigs, simulate
    from tether.cloud.halos.workload import LMTask

    task = LMTask(_workload(d_model, n_layer, seq_len, batch))
    configs = MethodConfigs(
        halos=HalosConfig(local_steps=h, push_every=k, merge_alpha=alpha),
        diloco=DiLoCoConfig(),
        async_local_sgd=AsyncLocalSGDConfig(),
    )
    optim = WorkerOptimConfig(lr=lr, warmup_steps=max(1, budget // 20), total_steps=budget)
    run = RunConfig(budget_steps=budget, eval_every=max(1, budget // 20), seed=seed)
    curve = simulate(method, task, Topology.from_yaml(topology), optim, run, configs)
    table = Table(title=f"{method}: validation loss (nats/byte) vs simulated time")
    for col in ("sim time s", "global steps", "val loss"):
        table.add_column(col)
    for t, s, v in zip(curve.times, curve.steps, curve.val_loss, strict=True):
        table.add_row(f"{t:.1f}", f"{s:.0f}", f"{v:.4f}")
    console.print(table)
    console.print(f"{task.n_params} parameters; real time {curve.real_seconds:.1f} s")
    if out is not None:
        out.write_text(json.dumps(asdict(curve), indent=1))


@app.command("ray")
def ray_cmd(
    budget: int = typer.Option(100, help="Global steps the global model must absorb."),
    time_scale: float = typer.Option(1.0, help="Real seconds per simulated second of delay (0: none)."),
    seed: int = typer.Option(0),
    lr: float = typer.Option(3e-3),
    d_model: int = typer.Option(64),
    n_layer: int = typer.Option(2),
    seq_len: int = typer.Option(64),
    batch: int = typer.Option(1),
    topology: Path = _TOPOLOGY,
    timeout: float = typer.Option(1800.0, help="Give up after this many seconds."),
) -> None:
    """Train HALoS on Ray actors (the cluster at TETHER_RAY_ADDRESS, or a local Ray)."""
    import ray

    from tether.cloud.halos.ray_runtime import RayHalos, connect

    started = connect()
    try:
        dep = RayHalos(
            _workload(d_model, n_layer, seq_len, batch),
            Topology.from_yaml(topology),
            WorkerOptimConfig(lr=lr, warmup_steps=max(1, budget // 20), total_steps=budget),
            HalosConfig(),
            RunConfig(budget_steps=budget, seed=seed),
            time_scale=time_scale,
        )
        res = dep.train(timeout_s=timeout)
    finally:
        if started:
            ray.shutdown()
    console.print(
        f"val loss {res.initial_loss:.4f} -> {res.final_loss:.4f} after {res.global_steps:.0f} global "
        f"steps in {res.wall_seconds:.1f} s; worker replacements: {res.replacements}"
    )


@app.command("serve", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def serve_cmd(ctx: typer.Context) -> None:
    """Run the HALoS node on the bus (ROS 2 arguments pass through: --ros-args -p K:=16 -p backend:=ray)."""
    from tether.cloud.halos.service import main

    main(list(ctx.args))
