"""`tether robot`: train the perception model, run a scenario with a live view, show a run's report,
list scenarios and hardware profiles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    name="robot",
    help="The simulated robot testbed: MuJoCo world, robot nodes, scenarios, hardware profiles.",
    no_args_is_help=True,
)
console = Console()


@app.command("train-perception")
def train_perception_cmd(
    frames: int = typer.Option(900, min=50, help="Training frames rendered from the simulator."),
    epochs: int = typer.Option(14, min=1, help="Training epochs."),
    seed: int = typer.Option(0, help="Seed of the frames and the weights."),
    out: Optional[Path] = typer.Option(None, help="Model path (default: <artefacts>/robot/perception.onnx)."),  # noqa: UP045
) -> None:
    """Train the person detector on simulator frames (torch -> ONNX); needs the cloud extra."""
    try:
        from tether.edge.robot.train import train_perception
    except ImportError as exc:
        console.print(f"[red]training needs torch and onnx ({exc}): pip install -e '.[cloud]'[/]")
        raise typer.Exit(2) from None
    try:
        report = train_perception(out, frames=frames, epochs=epochs, seed=seed, log=console.print)
    except RuntimeError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from None
    console.print(
        f"recall at input_resolution {report['default_resolution']}: {report['recall_at_default']:.3f}"
    )


@app.command("run")
def run_cmd(
    scenario: str = typer.Option("nominal", "--scenario", "-s", help="Scenario name or YAML path."),
    duration: float = typer.Option(0.0, min=0.0, help="Simulated seconds (0: the scenario's)."),
    hardware_profile: str = typer.Option(
        "", "--hardware-profile", help="Emulate NAME[:MODE], e.g. orin-agx-64:15W."
    ),
    view: bool = typer.Option(True, "--view/--no-view", help="Show the live view."),
    arg: list[str] = typer.Option(
        [], "--arg", help="More launch arguments NAME:=VALUE (e.g. num_samples:=300)."
    ),
    report: Optional[Path] = typer.Option(
        None, help="Where the report goes (default: <artefacts>/robot/runs/)."
    ),  # noqa: UP045
) -> None:
    """Run the stack on a scenario, with a live view, and print the report at the end."""
    from tether.edge.robot.stack import run_stack
    from tether.edge.sim.scenario import ScenarioError, load_scenario
    from tether.settings import settings

    try:
        sc = load_scenario(scenario)
    except ScenarioError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    args = {}
    for item in arg:
        key, sep, value = item.partition(":=")
        if not sep:
            console.print(f"[red]--arg takes NAME:=VALUE, but got {item!r}[/]")
            raise typer.Exit(2)
        args[key] = value
    if hardware_profile:
        args["hardware_profile"] = hardware_profile
    if report is None:
        import time

        report = settings().artefact_dir("robot", "runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{sc.name}.json"
    lines: list[str] = []
    live_view = None
    if view and console.is_terminal:
        live_view = _start_view(sc)
    try:
        run = run_stack(
            scenario,
            duration=duration or None,
            args=args,
            report_path=report,
            output=lines.append if live_view else None,
        )
    finally:
        if live_view is not None:
            live_view()
    if run.report is None:
        console.print("[red]the simulator wrote no report; its output:[/]")
        for line in lines[-30:]:
            console.print(line, markup=False)
        raise typer.Exit(1)
    (report.parent / "latest.json").write_text(report.read_text())
    _print_report(run.report, report)


def _start_view(sc):
    """Start the live view; returns the function that stops it."""
    from rich.live import Live

    from tether.bus import init, shutdown, spin_in_background
    from tether.edge.robot.view import RobotView
    from tether.edge.sim.occupancy import rasterise
    from tether.edge.sim.world import load_world

    init()
    view = RobotView(rasterise(load_world(sc.world), 0.1), f"tether robot run: {sc.name}")
    handle = spin_in_background(view.node)

    class _Renderable:
        def __rich__(self):
            return view.render()

    live = Live(_Renderable(), console=console, refresh_per_second=4)
    live.start()

    def stop() -> None:
        live.stop()
        handle.stop()
        view.close()
        shutdown()

    return stop


def _print_report(report: dict, path: Path | None) -> None:
    m = report["metrics"]
    table = Table(title=f"run report: {report['scenario']}" + (f" ({path})" if path else ""))
    table.add_column("metric")
    table.add_column("value", justify="right")
    rows = [
        ("simulated time", f"{m['sim_time_s']:.1f} s"),
        ("real-time factor", f"{m['rtf']:.2f}"),
        ("goals reached", f"{m['goals_reached']}"),
        (
            "time per goal",
            ", ".join(f"{t:.1f}" for t in m["goal_times_s"]) + " s" if m["goal_times_s"] else "-",
        ),
        ("collisions (walls, furniture)", f"{m['collisions']}"),
        ("contacts with people", f"{m['person_contacts']}"),
        ("path length", f"{m['path_length_m']:.1f} m"),
        ("tracking error mean / max", f"{m['tracking_mean_m']:.3f} / {m['tracking_max_m']:.3f} m"),
        ("cmd_vel rate at the base", f"{m['cmd_vel_rate_hz']:.1f} Hz"),
        ("world priority", str(report.get("world_priority"))),
        ("hardware profile", str(report.get("hardware_profile") or "-")),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    for e in report.get("events", []):
        console.print(
            f"  event at {e['at_s']:.1f} s: {e['action']} {json.dumps({k: v for k, v in e.items() if k not in ('at_s', 'action')})}"
        )


@app.command("report")
def report_cmd(
    path: Optional[Path] = typer.Argument(None, help="A report JSON (default: the latest run's)."),
) -> None:  # noqa: UP045
    """Print a run's report (the latest by default)."""
    from tether.settings import settings

    path = path or settings().artefacts / "robot" / "runs" / "latest.json"
    if not path.is_file():
        console.print(f"[red]no report at {path}; run `tether robot run` first[/]")
        raise typer.Exit(1)
    _print_report(json.loads(path.read_text()), path)


@app.command("scenarios")
def scenarios_cmd() -> None:
    """List the bundled scenarios and their scripted events."""
    from tether.edge.sim.scenario import list_scenarios, load_scenario

    table = Table(title="scenarios (edge/sim/scenarios)")
    for col in ("name", "people", "duration", "hardware profile", "events", "description"):
        table.add_column(col)
    for name in list_scenarios():
        s = load_scenario(name)
        events = ", ".join(f"{e.at_s:g}s {e.action}" for e in s.events) or "-"
        table.add_row(
            name, str(s.people.count), f"{s.duration_s:g} s", s.hardware_profile or "-", events, s.description
        )
    console.print(table)


@app.command("profiles")
def profiles_cmd() -> None:
    """List the hardware profiles, their power modes and the CPU share each would get here."""
    import os

    from tether.edge.hardware import list_profiles, load_profile

    table = Table(title=f"hardware profiles (this machine: {os.cpu_count()} cores)")
    for col in ("profile:mode", "online cores", "share", "quota here", "verified"):
        table.add_column(col)
    for name in list_profiles():
        p = load_profile(name)
        for m in p.power_modes:
            share = m.online_cores / p.cpu.max_cores
            table.add_row(
                f"{p.name}:{m.name}",
                f"{m.online_cores}/{p.cpu.max_cores}",
                f"{share:.2f}",
                f"{share * (os.cpu_count() or 1):.2f} cores",
                "yes" if m.verified else "no",
            )
    console.print(table)
    console.print("neither the absolute core count nor the clock speed is emulated: only the CPU share")


@app.command("check-scenario")
def check_scenario_cmd(path: Path) -> None:
    """Validate a scenario file; errors name the file and line."""
    from tether.edge.sim.scenario import ScenarioError, load_scenario

    try:
        s = load_scenario(path)
    except ScenarioError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from None
    console.print(f"{path}: scenario {s.name!r} is valid ({len(s.goals)} goals, {len(s.events)} events)")
