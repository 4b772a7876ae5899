"""Watching and keeping the bus: `tether top`, `metrics`, `record`, `play`, and `up` (bring the stack up)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Optional

import typer

from tether.cli import app, console, err

TELEMETRY_TOPIC = "/**/telemetry"


class TelemetryBoard:
    """The latest telemetry of every node on the bus, keyed by node fqn. Thread-safe."""

    def __init__(self, node) -> None:
        from tether.bus import get_type

        self._lock = threading.Lock()
        self.latest: dict[str, dict[str, float]] = {}
        self.seen: dict[str, float] = {}
        node.create_subscription(get_type("tether_msgs/msg/Telemetry"), TELEMETRY_TOPIC, self._on, 100)

    def _on(self, msg) -> None:
        fqn = f"{msg.namespace.rstrip('/')}/{msg.node}"
        with self._lock:
            self.latest[fqn] = {m.name: m.value for m in msg.metrics}
            self.seen[fqn] = time.monotonic()

    def snapshot(self, max_age: float = 5.0) -> dict[str, dict[str, float]]:
        now = time.monotonic()
        with self._lock:
            return {k: dict(v) for k, v in sorted(self.latest.items()) if now - self.seen[k] <= max_age}


def render_top(board: TelemetryBoard):
    from rich.table import Table

    table = Table(title=f"tether top — {time.strftime('%H:%M:%S')}", expand=False)
    for col in (
        "node",
        "cpu %",
        "rss MiB",
        "cb p99 ms",
        "dropped",
        "malformed",
        "publishes (Hz)",
        "receives (Hz)",
    ):
        table.add_column(col)
    for fqn, m in board.snapshot().items():
        pubs = ", ".join(
            f"{k[5:]}={v:.1f}"
            for k, v in sorted(m.items())
            if k.startswith("rate.") and not k.startswith("rate.recv.")
        )
        subs = ", ".join(f"{k[10:]}={v:.1f}" for k, v in sorted(m.items()) if k.startswith("rate.recv."))
        table.add_row(
            fqn,
            f"{m.get('cpu.percent', 0):.0f}",
            f"{m.get('mem.rss_mb', 0):.0f}",
            f"{m.get('latency.callback.p99_ms', 0):.2f}",
            f"{m.get('msgs.dropped', 0):.0f}",
            f"{m.get('msgs.malformed', 0):.0f}",
            pubs,
            subs,
        )
    return table


@app.command("top")
def top(
    once: bool = typer.Option(False, "--once", help="Print one snapshot after --wait seconds and exit."),
    wait: float = typer.Option(2.5, "--wait", help="Seconds to gather telemetry before the first view."),
    duration: float = typer.Option(0.0, "--duration", help="Stop after S seconds (0 = until Ctrl-C)."),
) -> None:
    """A live view of every node's telemetry."""
    from rich.live import Live

    from tether._cli_bus import cli_node

    with cli_node() as node:
        board = TelemetryBoard(node)
        time.sleep(wait)
        if once:
            console.print(render_top(board))
            return
        start = time.monotonic()
        try:
            with Live(render_top(board), console=console, refresh_per_second=1) as live:
                while not duration or time.monotonic() - start < duration:
                    time.sleep(1.0)
                    live.update(render_top(board))
        except KeyboardInterrupt:
            pass


def _metric_name(name: str) -> str:
    return "tether_" + "".join(c if c.isalnum() else "_" for c in name)


class _PromCollector:
    """prometheus_client collector: one gauge family per metric name, labelled by node."""

    def __init__(self, board: TelemetryBoard) -> None:
        self.board = board

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        families: dict[str, GaugeMetricFamily] = {}
        for fqn, metrics in self.board.snapshot().items():
            for name, value in metrics.items():
                key = _metric_name(name)
                fam = families.get(key)
                if fam is None:
                    fam = families[key] = GaugeMetricFamily(key, f"tether telemetry {name}", labels=["node"])
                fam.add_metric([fqn], value)
        yield from families.values()


@app.command("metrics")
def metrics(
    host: Optional[str] = typer.Option(None, help="Address to bind (default: settings, loopback)."),
    port: Optional[int] = typer.Option(None, help="Port (default: TETHER_METRICS_PORT or 9464)."),
    duration: float = typer.Option(0.0, "--duration", help="Stop after S seconds (0 = until Ctrl-C)."),
) -> None:
    """Serve every node's telemetry as a Prometheus endpoint (/metrics)."""
    from prometheus_client import CollectorRegistry, start_http_server

    from tether._cli_bus import cli_node
    from tether.settings import settings

    s = settings()
    host = host or s.metrics_host
    port = port or s.metrics_port
    with cli_node() as node:
        registry = CollectorRegistry()
        registry.register(_PromCollector(TelemetryBoard(node)))
        server, thread = start_http_server(port, addr=host, registry=registry)
        console.print(f"serving Prometheus metrics on http://{host}:{port}/metrics", highlight=False)
        start = time.monotonic()
        try:
            while not duration or time.monotonic() - start < duration:
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
        finally:
            server.shutdown()
            thread.join(timeout=2)


@app.command("record")
def record(
    topics: Optional[list[str]] = typer.Argument(
        None, help="Topics to record (default: all, as they appear)."
    ),
    output: Path = typer.Option(..., "-o", "--output", help="The bag folder to create (rosbag2 + MCAP)."),
    duration: float = typer.Option(0.0, "--duration", help="Stop after S seconds (0 = until Ctrl-C)."),
) -> None:
    """Record topics to a ROS 2 bag in MCAP storage."""
    from tether._cli_bus import cli_node
    from tether.bus.recording import Recorder

    with cli_node() as node:
        try:
            rec = Recorder(node, output, list(topics or []))
        except FileExistsError as exc:
            err.print(f"[red]{exc}[/]")
            raise typer.Exit(2) from None
        console.print(f"recording to {output}", highlight=False)
        start = time.monotonic()
        try:
            while not duration or time.monotonic() - start < duration:
                time.sleep(0.1)
        except KeyboardInterrupt:
            pass
        finally:
            rec.close()
        for topic, n in sorted(rec.counts.items()):
            console.print(f"  {topic}: {n} messages", highlight=False)


@app.command("play")
def play_cmd(
    bag: Path,
    rate: float = typer.Option(1.0, "--rate", "-r", help="Playback speed factor."),
    topics: Optional[list[str]] = typer.Option(None, "--topics"),
) -> None:
    """Publish a recorded bag's messages with their original timing."""
    from tether._cli_bus import cli_node
    from tether.bus.recording import play

    if not bag.exists():
        err.print(f"[red]no bag at {bag}[/]")
        raise typer.Exit(2)
    with cli_node(spin=False) as node:
        counts = play(node, bag, rate=rate, topics=list(topics or []) or None)
        time.sleep(0.3)
    for topic, n in sorted(counts.items()):
        console.print(f"  {topic}: {n} messages", highlight=False)


def _default_stack() -> tuple[Path, dict[str, str]]:
    """The stack `tether up` brings up: the simulated robot when its nodes are installed, else the demo pair."""
    from tether.launch import find_pkg_share
    from tether.launch.packages import node_entry_points
    from tether.settings import settings

    root = find_pkg_share("tether", settings().ament_prefix_path)
    robot = root / "launch" / "sim_robot.launch.yaml"
    if robot.is_file() and "tether_robot.sim" in node_entry_points():
        return robot, {}
    return root / "launch" / "demo.launch.yaml", {}


def _up_views(node) -> list:
    """Panels plugged into `tether up` (entry points `tether.up_views`: factory(node) -> an object with
    `render()` -> a rich renderable or None, and `finish()` -> the text to print at the end or None)."""
    from importlib import metadata

    views = []
    for ep in sorted(metadata.entry_points(group="tether.up_views"), key=lambda e: e.name):
        try:
            views.append(ep.load()(node))
        except Exception as exc:  # a broken plug-in must not stop the stack
            err.print(f"view {ep.name!r} unavailable ({type(exc).__name__}: {exc})")
    return views


@app.command("up")
def up(
    duration: float = typer.Option(120.0, "--duration", help="Seconds to run (0 = until Ctrl-C)."),
    launch_file: Optional[Path] = typer.Option(
        None, "--launch", help="Launch file (default: the robot stack)."
    ),
    hardware_profile: Optional[str] = typer.Option(
        None, "--hardware-profile", help="Limit the stack's CPU as NAME[:MODE] would (edge cgroup hook)."
    ),
    view: bool = typer.Option(True, "--view/--no-view", help="Show the live telemetry view while running."),
    args: Optional[list[str]] = typer.Argument(None, help="Launch arguments NAME:=VALUE."),
) -> None:
    """Bring the stack up on this machine: the bus router, the launch file's nodes, a live view, a report."""
    from rich.live import Live

    from tether._cli_bus import cli_node
    from tether._cli_launch import _bus_router
    from tether.launch import LaunchError, LaunchService, load_hooks, parse_cli_args, parse_launch_file

    path, launch_args = (launch_file, {}) if launch_file else _default_stack()
    launch_args.update(parse_cli_args(args or []))
    if hardware_profile:
        launch_args["hardware_profile"] = hardware_profile
    try:
        description = parse_launch_file(path, launch_args)
        hooks = load_hooks(description.launch_args)
    except LaunchError as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    console.print(f"tether up: {path} for {'ever (Ctrl-C stops)' if not duration else f'{duration:g} s'}")
    with _bus_router(True, err), cli_node() as node:
        board = TelemetryBoard(node)
        views = _up_views(node)
        lines: list[str] = []
        service = LaunchService(description, hooks=hooks, duration=duration or None, output=lines.append)
        done = threading.Event()

        def screen():
            from rich.console import Group

            panels = [v.render() for v in views]
            return Group(render_top(board), *[p for p in panels if p is not None])

        def watch() -> None:
            if not view:
                done.wait()
                return
            with Live(screen(), console=console, refresh_per_second=1, transient=False) as live:
                while not done.wait(1.0):
                    for line in lines[-5:]:
                        live.console.print(line, highlight=False, markup=False)
                    lines.clear()
                    live.update(screen())

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            summary = service.run()
        finally:
            done.set()
            watcher.join(timeout=3)
        final = board.snapshot(max_age=10.0)
        endings = [text for text in (v.finish() for v in views) if text]
    console.print(f"\n[bold]report[/]: {summary.reason.value} after {summary.wall_s:.1f} s")
    for row in summary.rows():
        console.print("  " + "  ".join(row), highlight=False)
    for fqn, m in final.items():
        rates = ", ".join(
            f"{k[5:]} {v:.1f} Hz"
            for k, v in sorted(m.items())
            if k.startswith("rate.") and "telemetry" not in k
        )
        console.print(f"  {fqn}: cpu {m.get('cpu.percent', 0):.0f}%  {rates}", highlight=False)
    for text in endings:
        console.print(text, highlight=False, markup=False)
    if not summary.ok:
        raise typer.Exit(1)
