"""`tether configbot`: tune a running stack against a specification, validate a specification, watch, inspect.

tether configbot validate edge/configbot/specs/sim_robot.yaml
tether configbot tune --spec edge/configbot/specs/sim_robot.yaml        (any stack already on the bus)
tether configbot view                                                    (a ConfigBot node's live status)
tether configbot library --spec FILE                                     (the context library)
tether configbot report RUN_DIR --spec FILE                              (re-plot a run's timeline)
tether configbot dashboard                                               (optuna-dashboard on the studies)
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

__all__ = ["app"]

app = typer.Typer(
    help="ConfigBot: online profiling and constrained tuning of the nodes on the bus.", no_args_is_help=True
)
console = Console()
err = Console(stderr=True)


def _load(spec: Path):
    from tether.edge.configbot.spec import SpecError, load_spec

    try:
        return load_spec(spec)
    except SpecError as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None


@app.command("validate")
def validate(spec: Path = typer.Argument(..., help="A ConfigBot specification (YAML).")) -> None:
    """Check a specification; errors name the file and the line."""
    s = _load(spec)
    table = Table(title=f"{spec}: spec {s.name!r} is valid", show_edge=False)
    table.add_column("part")
    table.add_column("content")
    for c in s.constraints:
        table.add_row("constraint" + ("" if c.core else " (non-core)"), c.label(s.namespace))
    if s.objective is not None:
        terms = ", ".join(f"{sig.key}/{w:g}" for sig, w in s.objective.terms(s.namespace))
        table.add_row(
            "objective", f"{s.objective.direction} {'min of ' if s.objective.max_min_rate else ''}{terms}"
        )
    for n in s.node_names():
        ns = s.node_spec(n)
        table.add_row(
            "node",
            f"{n}{' essential' if ns.essential else ''}{f' floor {ns.quota_floor}' if ns.quota_floor else ''}",
        )
    for k in s.knobs:
        rng = k.choices if k.choices is not None else f"[{k.min:g}, {k.max:g}]"
        table.add_row("knob", f"{k.key} {rng}")
    table.add_row(
        "trial",
        f"settle {s.trial.settle_s:g} s + measure {s.trial.measure_s:g} s, at most {s.trial.max_trials}",
    )
    console.print(table)


@app.command("tune")
def tune(
    spec: Path = typer.Option(..., "--spec", help="The specification (YAML)."),
    duration: float = typer.Option(
        0.0, "--duration", min=0.0, help="Stop after S seconds (0 = until Ctrl-C)."
    ),
    mode: str = typer.Option("tune", "--mode", help="tune, static (apply --config, monitor) or observe."),
    config: Optional[str] = typer.Option(None, "--config", help="static mode: JSON, or a JSON/YAML file."),  # noqa: UP045
    library: bool = typer.Option(True, "--library/--no-library", help="Reuse the context library."),
    sampler: str = typer.Option("gp", "--sampler", help="gp (GPSampler), tpe or random."),
    cgroups: bool = typer.Option(True, "--cgroups/--no-cgroups", help="Place the nodes in cgroups."),
    view: bool = typer.Option(True, "--view/--no-view", help="Show the live view."),
    name: str = typer.Option("configbot", "--name", help="ConfigBot's node name on the bus."),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="Timeline, report and plot go here."),  # noqa: UP045
) -> None:
    """Run ConfigBot against the stack on the bus now (any nodes: robot or cloud); Ctrl-C stops it with a report."""
    from rich.live import Live

    from tether.bus import Node, init, shutdown, spin_in_background
    from tether.edge.configbot.bot import BotOptions, ConfigBot, Mode
    from tether.edge.configbot.node import load_config
    from tether.edge.configbot.view import format_report, render_status

    s = _load(spec)
    if mode not in ("tune", "static", "observe") or sampler not in ("gp", "tpe", "random"):
        err.print(
            f"[red]error:[/] --mode must be tune, static or observe and --sampler gp, tpe or random; got {mode}, {sampler}"
        )
        raise typer.Exit(2)
    init()
    node = Node(name)
    spinner = spin_in_background(node)
    opts = BotOptions(
        mode=Mode(mode),
        static_config=load_config(config or ""),
        library=library,
        sampler=sampler,
        cgroups=cgroups,
        run_dir=run_dir,
    )
    report: dict = {}
    try:
        bot = ConfigBot(s, node, opts)
        runner = threading.Thread(target=lambda: report.update(bot.run(duration or None)), daemon=True)
        runner.start()
        try:
            if view:
                with Live(render_status(bot.status()), console=console, refresh_per_second=1) as live:
                    while runner.is_alive():
                        runner.join(1.0)
                        live.update(render_status(bot.status()))
            else:
                while runner.is_alive():
                    runner.join(1.0)
        except KeyboardInterrupt:
            bot.stop()
            runner.join(timeout=30)
    finally:
        spinner.stop()
        node.destroy_node()
        shutdown()
    if report:
        console.print(format_report(report), highlight=False, markup=False)
    if report.get("state") == "error":
        raise typer.Exit(2)
    if report.get("infeasible"):
        raise typer.Exit(1)


@app.command("view")
def view(
    duration: float = typer.Option(0.0, "--duration", help="Stop after S seconds (0 = until Ctrl-C)."),
    once: bool = typer.Option(False, "--once", help="Print one status (after up to 5 s) and exit."),
    topic: str = typer.Option("/configbot/status", "--topic"),
) -> None:
    """The live view of a ConfigBot node on the bus (as launched by sim_robot.launch.yaml)."""
    from rich.live import Live

    from tether._cli_bus import cli_node
    from tether.edge.configbot.view import StatusWatcher, render_status

    with cli_node() as node:
        watcher = StatusWatcher(node, topic)
        if once:
            end = time.monotonic() + 5
            while watcher.latest is None and time.monotonic() < end:
                time.sleep(0.1)
            console.print(render_status(watcher.latest))
            if watcher.latest is None:
                raise typer.Exit(1)
            return
        start = time.monotonic()
        try:
            with Live(render_status(None), console=console, refresh_per_second=1) as live:
                while not duration or time.monotonic() - start < duration:
                    time.sleep(1.0)
                    live.update(render_status(watcher.latest))
        except KeyboardInterrupt:
            pass


def _store(store: Path | None) -> Path:
    from tether.settings import settings

    return store or settings().artefact_dir("configbot")


@app.command("library")
def library_cmd(
    spec: Path = typer.Option(..., "--spec", help="The specification whose library to show."),
    store: Optional[Path] = typer.Option(None, "--store", help="Folder of library.db (default: artefacts)."),  # noqa: UP045
) -> None:
    """The context library: the best configuration kept per context."""
    from tether.edge.configbot.library import ContextLibrary

    s = _load(spec)
    with ContextLibrary(_store(store) / "library.db", s) as lib:
        entries = lib.entries()
    table = Table(title=f"context library of {s.name!r}", show_edge=False)
    for col in ("context", "objective", "feasible", "stale", "uses", "trials", "updated", "configuration"):
        table.add_column(col)
    for e in entries:
        table.add_row(
            e.fingerprint,
            f"{e.objective:.3g}" if e.objective is not None else "-",
            str(e.feasible),
            str(e.stale),
            str(e.uses),
            str(e.trials),
            time.strftime("%Y-%m-%d %H:%M", time.localtime(e.updated)),
            ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in e.config.items()),
        )
    console.print(table)


@app.command("report")
def report_cmd(
    run_dir: Path = typer.Argument(..., help="A ConfigBot run folder (timeline.jsonl, report.json)."),
    spec: Path = typer.Option(..., "--spec", help="The specification the run used."),
) -> None:
    """Print a run's report and redraw its PNG timeline."""
    import json

    from tether.edge.configbot.timeline import Timeline
    from tether.edge.configbot.view import format_report

    s = _load(spec)
    jsonl = run_dir / "timeline.jsonl"
    if not jsonl.is_file():
        err.print(f"[red]error:[/] no timeline.jsonl in {run_dir}")
        raise typer.Exit(2)
    tl = Timeline.load(s, jsonl)
    tl.plot(run_dir / "timeline.png")
    if (run_dir / "report.json").is_file():
        console.print(
            format_report(json.loads((run_dir / "report.json").read_text())), highlight=False, markup=False
        )
    else:
        console.print(tl.summary())
    console.print(f"timeline: {run_dir / 'timeline.png'}")


@app.command("dashboard")
def dashboard(
    store: Optional[Path] = typer.Option(None, "--store", help="Folder of studies.db (default: artefacts)."),  # noqa: UP045
    port: int = typer.Option(8080, "--port"),
    host: str = typer.Option("127.0.0.1", "--host"),
) -> None:
    """Open the Optuna studies (every tuning, live) in optuna-dashboard."""
    import shutil
    import subprocess

    url = f"sqlite:///{_store(store) / 'studies.db'}"
    exe = shutil.which("optuna-dashboard")
    if exe is None:
        err.print(
            f"optuna-dashboard is not installed (pip install optuna-dashboard); then: optuna-dashboard {url}"
        )
        raise typer.Exit(1)
    console.print(f"optuna-dashboard {url} on http://{host}:{port}", highlight=False)
    try:
        subprocess.run([exe, url, "--host", host, "--port", str(port)], check=False)
    except KeyboardInterrupt:
        pass
