"""`tether omega ...`: make graphs and train models, precompute embedding stores, serve held-out requests
with any method, run the bus node (OMEGA, arXiv 2501.08547)."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    name="omega",
    help="OMEGA: low-latency GNN serving with selective recomputation and graph-parallel aggregation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()

_GRAPH = typer.Option(
    "bench", "--graph", help="Graph name: a preset (bench, quick) or a name given at import."
)
_MODELS = typer.Option(
    "gcn2,gcn3,sage2,sage3,gat2,gat3",
    "--models",
    help="Comma-separated model names, e.g. sage3,gat2,sage2-max.",
)


def _bundle(graph: str):
    from tether.cloud.omega.bundle import Bundle, default_root

    return Bundle(default_root(graph))


def _configs(bundle, names: str, spec):
    from tether.cloud.omega.presets import model_config

    if bundle.has_graph():
        split = bundle.load_split()
        in_dim, classes = int(split.full.x.shape[1]), split.full.num_classes
    elif spec is not None:
        in_dim, classes = spec.feature_dim, spec.num_classes
    else:
        raise typer.BadParameter(
            f"no graph {bundle.name!r}: use a preset (bench, quick) or import one with --edges"
        )
    try:
        return [
            model_config(n.strip(), in_dim=in_dim, num_classes=classes) for n in names.split(",") if n.strip()
        ]
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None


@app.command("train")
def train_cmd(
    graph: str = _GRAPH,
    models: str = _MODELS,
    epochs: Optional[int] = typer.Option(None, help="Epochs for every model (default: the preset's)."),  # noqa: UP045
    nodes: Optional[int] = typer.Option(None, help="Generated graph: node count (overrides the preset)."),  # noqa: UP045
    degree: Optional[float] = typer.Option(None, help="Generated graph: mean degree (overrides the preset)."),  # noqa: UP045
    edges: Optional[Path] = typer.Option(None, help="Your graph: edge list (.npy or text 'u v' lines)."),  # noqa: UP045
    features: Optional[Path] = typer.Option(None, help="Your graph: features (.npy (N, F) or text rows)."),  # noqa: UP045
    labels: Optional[Path] = typer.Option(None, help="Your graph: labels (.npy (N,) or one per line)."),  # noqa: UP045
    held_out: float = typer.Option(0.3, help="Your graph: share of nodes held out as serving-time requests."),
    batch_size: int = typer.Option(1024, help="Your graph: new nodes per request."),
    threads: int = typer.Option(0, help="torch threads (0: torch's default)."),
) -> None:
    """Generate (or import) the graph and train every listed model that is missing; then precompute its store."""
    import dataclasses

    import torch

    from tether.cloud.omega.presets import GRAPHS, train_config

    if threads:
        torch.set_num_threads(threads)
    bundle = _bundle(graph)
    spec = GRAPHS.get(graph)
    if spec is not None and (nodes or degree):
        spec = dataclasses.replace(
            spec, num_nodes=nodes or spec.num_nodes, avg_degree=degree or spec.avg_degree
        )
    if edges or features or labels:
        if not (edges and features and labels):
            raise typer.BadParameter("importing a graph needs all three of --edges, --features and --labels")
        if bundle.has_graph():
            raise typer.BadParameter(f"graph {graph!r} exists at {bundle.root}; pick another --graph name")
        from tether.cloud.omega.loaders import load_graph_files

        split = bundle.import_graph(
            load_graph_files(edges, features, labels), held_out_share=held_out, batch_size=batch_size
        )
        console.print(
            f"imported {split.full.num_nodes} nodes, {split.full.num_edges // 2} edges into {bundle.root}"
        )
        spec = None
    elif spec is None and not bundle.has_graph():
        raise typer.BadParameter(
            f"no graph {graph!r}: use a preset ({', '.join(GRAPHS)}) or import one with --edges"
        )
    configs = _configs(bundle, models, spec)

    def train_for(cfg):
        tc = train_config("quick" if graph == "quick" else "bench", cfg)
        return dataclasses.replace(tc, epochs=epochs) if epochs else tc

    bundle.prepare(spec, configs, train_for, progress=console.print)
    _print_models(bundle, [c.name for c in configs])


def _print_models(bundle, names: list[str]) -> None:
    table = Table(title=f"omega models of {bundle.name} ({bundle.root})")
    for col in ("model", "validation accuracy", "train s", "store"):
        table.add_column(col)
    for name in names:
        if not bundle.has_model(name):
            table.add_row(name, "-", "-", "missing")
            continue
        meta = bundle.model_meta(name)
        table.add_row(
            name,
            f"{meta['val_acc']:.3f}",
            f"{meta['seconds']:.0f}",
            "yes" if bundle.has_store(name) else "missing",
        )
    console.print(table)


@app.command("precompute")
def precompute_cmd(
    graph: str = _GRAPH,
    models: str = _MODELS,
    partitions: int = typer.Option(
        4, min=1, help="Store partitions (node-id ranges, one file each per layer)."
    ),
) -> None:
    """Run each trained model over the existing graph and (re)write its memory-mapped, partitioned store."""
    bundle = _bundle(graph)
    for cfg in _configs(bundle, models, None):
        t = time.perf_counter()
        path = bundle.precompute(cfg.name, num_partitions=partitions)
        console.print(f"{cfg.name}: {path} in {time.perf_counter() - t:.1f} s")


@app.command("info")
def info_cmd(graph: str = _GRAPH) -> None:
    """The graph's size and split, and each model's accuracy and store."""
    bundle = _bundle(graph)
    if not bundle.has_graph():
        console.print(f"no graph {graph!r} at {bundle.root}; run `tether omega train --graph {graph}`")
        raise typer.Exit(1)
    split = bundle.load_split()
    console.print(
        f"{graph}: {split.full.num_nodes} nodes, {split.full.num_edges // 2} undirected edges; "
        f"{split.num_base} existing nodes ({bundle.index().csr.nnz // 2} edges), "
        f"{split.num_requests} requests of {split.batch_size} new nodes"
    )
    names = sorted(p.stem for p in (bundle.root / "models").glob("*.pt"))
    _print_models(bundle, names)


@app.command("serve")
def serve_cmd(
    graph: str = _GRAPH,
    model: str = typer.Option("sage3", help="Model name."),
    method: str = typer.Option("omega", help="exact | sampled | precomputed | omega"),
    budget: float = typer.Option(
        0.3, min=0.0, max=1.0, help="OMEGA's recompute budget (share of changed nodes)."
    ),
    requests: int = typer.Option(5, min=1, help="Held-out requests to serve."),
    workers: int = typer.Option(1, min=1, help="Graph-parallel worker processes (1: in this process)."),
    threads: int = typer.Option(1, min=1, help="torch threads per process."),
) -> None:
    """Serve held-out requests (batches of new nodes) and print latency and accuracy per request."""
    import torch

    from tether.cloud.omega.plan import method_from_name

    torch.set_num_threads(threads)
    bundle = _bundle(graph)
    try:
        m = method_from_name(method, budget=budget)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    split = bundle.load_split()
    if workers > 1:
        from tether.cloud.omega.parallel import ParallelServer

        server = ParallelServer(bundle.root, model, workers, threads=threads)
    else:
        server = bundle.server(model)
    table = Table(title=f"tether omega serve: {model} {method} on {graph}")
    for col in ("request", "new nodes", "latency ms", "accuracy", "recomputed"):
        table.add_column(col)
    lat = []
    try:
        n = min(requests, split.num_requests)
        for r in range(n):
            req = split.request(r)
            t = time.perf_counter()
            out = server.infer(req, m)
            ms = (time.perf_counter() - t) * 1e3
            lat.append(ms)
            acc = float((out.argmax(1) == req.labels).float().mean())
            last = server.last[0] if isinstance(server.last, list) else server.last
            table.add_row(
                str(r), str(req.size), f"{ms:.1f}", f"{acc:.3f}", f"{last.recomputed}/{last.candidates}"
            )
    finally:
        if workers > 1:
            server.close()
    console.print(table)
    console.print(f"median latency {statistics.median(lat):.1f} ms over {len(lat)} requests")


@app.command("node", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def node_cmd(ctx: typer.Context) -> None:
    """Run the OMEGA serving node on the bus; ROS 2 arguments follow: --ros-args -p recompute_budget:=0.2"""
    from tether.cloud.omega.service import main

    main(list(ctx.args))
