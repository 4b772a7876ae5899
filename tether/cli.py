"""The `tether` command: the bus tools, the launcher, benchmarks, and each system's sub-commands.

Systems plug in through entry points: `tether.cli` (a typer app per system, mounted
as `tether <name>`) and `tether.bench` (a `run(ctx)` per system, run by `tether bench`).
"""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    name="tether",
    help="tether: an edge-to-cloud systems stack for robots (ROS 2 messages over Zenoh).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console(width=None if sys.stdout.isatty() else 140)
err = Console(stderr=True)


@app.callback()
def _root() -> None:
    """tether: an edge-to-cloud systems stack for robots (ROS 2 messages over Zenoh)."""


def _entry_points(group: str) -> dict[str, metadata.EntryPoint]:
    return {ep.name: ep for ep in metadata.entry_points(group=group)}


@app.command(
    "bench",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def bench_cmd(
    ctx: typer.Context,
    system: str = typer.Argument(..., help="The system to benchmark (see `tether bench list`)."),
    quick: bool = typer.Option(
        False, "--quick", help="Tiny sizes, < 60 s: checks the contract, not the targets."
    ),
    large: bool = typer.Option(False, "--large", help="Larger sizes (for a GPU or a bigger machine)."),
    out: Path = typer.Option(
        Path("bench/results"), "--out", help="Folder for <system>.json and <system>.png."
    ),
) -> None:
    """Run a system's benchmark against its baseline and write the contract's JSON and plot."""
    from tether.bench import BenchContext, write_report

    eps = _entry_points("tether.bench")
    if system == "list":
        for name in sorted(eps):
            console.print(name)
        return
    if system not in eps:
        err.print(f"[red]no benchmark named {system!r}[/]; known: {', '.join(sorted(eps)) or 'none'}")
        raise typer.Exit(2)
    options: dict[str, str] = {}
    for extra in ctx.args:  # --reference, --key=value: passed through to the benchmark
        key, _, value = extra.lstrip("-").partition("=")
        options[key.replace("-", "_")] = value or "true"
    bctx = BenchContext(system=system, quick=quick, large=large, out_dir=out, options=options)
    report = eps[system].load()(bctx)
    path = write_report(bctx, report)
    table = Table(title=f"tether bench {system}{' (quick)' if quick else ''}")
    for col in ("name", "value", "unit", "baseline", "baseline value", "ratio", "target", "meets"):
        table.add_column(col)

    def fmt(x: object) -> str:
        if x is None:
            return "-"
        if isinstance(x, float):
            return f"{x:.4g}"
        return str(x)

    for r in report.rows:
        table.add_row(
            r.name,
            fmt(r.value),
            r.unit,
            fmt(r.baseline),
            fmt(r.baseline_value),
            fmt(r.ratio),
            fmt(r.target),
            {True: "[green]yes[/]", False: "[red]no[/]", None: "-"}[r.meets_target],
        )
    console.print(table)
    for note in report.notes:
        console.print(f"note: {note}")
    console.print(f"wrote {path}")


def _mount_plugins(argv: list[str]) -> None:
    """Mount systems' typer apps from the `tether.cli` entry points; a broken one is reported, not fatal.

    Only the system the command line names is imported (a system's CLI may import torch or Ray,
    which `tether topic echo` should not wait for); all of them for help and unknown commands.
    """
    eps = _entry_points("tether.cli")
    first = next((a for a in argv if not a.startswith("-")), None)
    builtin = {c.name for c in app.registered_commands} | {g.name for g in app.registered_groups}
    if first in eps:
        eps = {first: eps[first]}
    elif first in builtin:
        return
    for name, ep in sorted(eps.items()):
        try:
            sub = ep.load()
        except Exception as exc:  # a plug-in that fails to import must not take the whole command down
            print(f"tether: sub-command {name!r} unavailable ({type(exc).__name__}: {exc})", file=sys.stderr)
            continue
        app.add_typer(sub, name=name)


def main(argv: Optional[list[str]] = None) -> None:  # noqa: UP045 - typer needs Optional on 3.10
    from tether import (
        _cli_bus,  # noqa: F401  (registers the bus commands on `app`)
        _cli_launch,
    )

    _cli_launch.register(app)

    _mount_plugins(sys.argv[1:] if argv is None else argv)
    app(args=argv)
