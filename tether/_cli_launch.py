"""`tether launch FILE [name:=value ...] [--duration S] [--show]`: run a ROS 2 YAML launch file."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add the `launch` command to the `tether` app."""
    app.command("launch")(launch_cmd)


def launch_cmd(
    file: Path = typer.Argument(..., help="A ROS 2 YAML launch file (*.launch.yaml)."),
    args: Optional[list[str]] = typer.Argument(  # noqa: UP045 - typer needs Optional on 3.10
        None, help="Launch arguments as NAME:=VALUE (ros2 launch syntax).", show_default=False
    ),
    duration: float = typer.Option(
        0.0, "--duration", min=0.0, help="Stop after S seconds (0: until Ctrl-C)."
    ),
    show: bool = typer.Option(False, "--show", help="Print the parsed description; run nothing."),
    router: bool = typer.Option(
        True, "--router/--no-router", help="Host the bus router (or join the one already answering)."
    ),
    hooks: bool = typer.Option(True, "--hooks/--no-hooks", help="Load tether.launch_hooks entry points."),
) -> None:
    """Run every node of a launch file as its own process; Ctrl-C stops them all (SIGINT, SIGTERM, SIGKILL)."""
    from tether.launch import LaunchError, LaunchService, load_hooks, parse_cli_args, parse_launch_file

    console, err = Console(), Console(stderr=True)
    try:
        description = parse_launch_file(file, parse_cli_args(args or []))
        if show:
            console.print(description.describe(), markup=False, highlight=False, soft_wrap=True)
            return
        process_hooks = load_hooks(description.launch_args) if hooks else []
    except LaunchError as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    with _bus_router(router, err):
        summary = LaunchService(description, hooks=process_hooks, duration=duration or None).run()
    table = Table(title=f"tether launch {file.name}: {summary.reason.value} after {summary.wall_s:.1f} s")
    for col in ("process", "kind", "starts", "last exit", "uptime"):
        table.add_column(col)
    for row in summary.rows():
        table.add_row(*row)
    console.print(table)
    if summary.log_dir is not None:
        console.print(f"logs: {summary.log_dir}", highlight=False)
    if not summary.ok:
        raise typer.Exit(1)


@contextlib.contextmanager
def _bus_router(enabled: bool, err: Console):
    """Host the bus router for the launched nodes (joining one that already answers), closed at the end."""
    if not enabled:
        yield None
        return
    from tether.bus.router import Router

    try:
        router = Router.from_settings()
    except (RuntimeError, ValueError) as exc:
        err.print(f"[yellow]warning:[/] {exc}; nodes will look for the bus on their own")
        yield None
        return
    with router:
        yield router
