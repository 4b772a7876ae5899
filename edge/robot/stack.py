"""Running the simulated robot stack (`launch/sim_robot.launch.yaml`) from Python: the CLI, the benchmark
and the tests share this one way of starting it, through the launcher (`tether.launch`).

`run_stack` parses the launch file with the given arguments, runs it until the simulator ends
its scenario (its exit ends the launch), and returns the simulator's report, the launch summary
and each process's pid. Extra `ProcessHook`s see every process start and exit (e.g. to put a
node in a cgroup); the `tether.launch_hooks` entry points (hardware-profile emulation) apply too.
"""

from __future__ import annotations

import json
import signal
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tether.launch import LaunchService, ProcessHook, ProcessInfo, load_hooks, parse_launch_file
from tether.launch.summary import StopReason

__all__ = ["LAUNCH_FILE", "StackRun", "node_name", "run_stack"]

LAUNCH_FILE = Path(__file__).resolve().parents[2] / "launch" / "sim_robot.launch.yaml"


def node_name(info: ProcessInfo) -> str:
    return info.node_name or info.exec or info.label


@dataclass
class StackRun:
    """What a run left: the simulator's report (None if it wrote none), pids by node name, the summary."""

    report: dict | None
    pids: dict[str, int]
    summary: object
    report_path: Path
    exits: dict[str, int] = field(default_factory=dict)


class _EndWithSimulator(ProcessHook):
    """Records pids; when the simulator exits (its scenario is over, or it failed), ends the launch."""

    def __init__(self, on_start: Callable[[str, int], None] | None) -> None:
        self.service: LaunchService | None = None
        self.pids: dict[str, int] = {}
        self.exits: dict[str, int] = {}
        self._on_start = on_start

    def on_start(self, info: ProcessInfo, pid: int) -> None:
        name = node_name(info)
        self.pids[name] = pid
        if self._on_start is not None:
            self._on_start(name, pid)

    def on_exit(self, info: ProcessInfo, pid: int, returncode: int) -> None:
        self.exits[node_name(info)] = returncode
        if info.exec == "sim" and self.service is not None:
            self.service.shutdown()


def run_stack(
    scenario: str = "nominal",
    *,
    duration: float | None = None,
    args: Mapping[str, str] | None = None,
    report_path: Path | None = None,
    hooks: Iterable[ProcessHook] = (),
    entry_point_hooks: bool = True,
    output: IO[str] | Callable[[str], None] | None = None,
    on_start: Callable[[str, int], None] | None = None,
    timeout_margin_s: float = 90.0,
    router: bool = True,
) -> StackRun:
    """Launch the stack for `scenario` (simulated `duration` s, default the scenario's) and wait for its end."""
    from tether.edge.sim.scenario import load_scenario

    sim_duration = duration if duration else load_scenario(scenario).duration_s
    if report_path is None:
        report_path = Path(tempfile.mkdtemp(prefix="tether-robot-")) / "report.json"
    # The robot's own figures: ConfigBot (which the launch file may also start) stays off unless asked for.
    launch_args = {
        "scenario": str(scenario),
        "duration": f"{float(sim_duration)}",
        "report": str(report_path),
        "configbot": "false",
    }
    launch_args.update({k: str(v) for k, v in (args or {}).items()})
    description = parse_launch_file(LAUNCH_FILE, launch_args)
    end = _EndWithSimulator(on_start)
    all_hooks: list[ProcessHook] = [end, *hooks]
    if entry_point_hooks:
        all_hooks += load_hooks(description.launch_args)
    # The wall-clock limit only guards against a hung run: the simulator ends it normally.
    service = LaunchService(
        description, hooks=all_hooks, duration=sim_duration + timeout_margin_s, output=output
    )
    end.service = service
    from tether.bus.router import Router

    # Host the bus router (or join the one already answering), as `tether launch` does.
    hosted = Router.from_settings() if router else None
    try:
        summary = service.run()
    finally:
        if hosted is not None:
            hosted.close()
        for hook in all_hooks:
            close = getattr(hook, "close", None)
            if callable(close):
                close()
    # The launch took Ctrl-C / SIGTERM to stop the stack cleanly; the caller (a benchmark running
    # many stacks in a row) must stop too, not start the next run.
    if summary.reason is StopReason.INTERRUPTED:
        raise KeyboardInterrupt
    if summary.reason is StopReason.TERMINATED:
        raise SystemExit(128 + signal.SIGTERM)
    report = json.loads(report_path.read_text()) if report_path.is_file() else None
    return StackRun(
        report=report, pids=dict(end.pids), summary=summary, report_path=report_path, exits=end.exits
    )
