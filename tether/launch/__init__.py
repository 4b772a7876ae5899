"""The launcher: ROS 2 YAML launch files (`tether launch FILE name:=value`), as ros2 launch reads them.

A description (`parse_launch_file`: parsed, inspectable, no side effects) is kept apart from
its execution (`LaunchService`: one OS process per node, prefixed output, respawn, SIGINT ->
SIGTERM -> SIGKILL shutdown, hooks told each process id). `launch_file` does both.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO

from tether.launch.description import (
    Argument,
    LaunchDescription,
    Location,
    NodeSpec,
    ParamFile,
    ParamValues,
    ProcessDescription,
)
from tether.launch.errors import LaunchError, LaunchFileError
from tether.launch.execution import LaunchService
from tether.launch.hooks import HOOK_GROUP, ProcessHook, ProcessInfo, load_hooks
from tether.launch.packages import find_pkg_share, resolve_node
from tether.launch.parser import parse_cli_args, parse_launch_file
from tether.launch.summary import ExitRecord, LaunchSummary, ProcessSummary, StopReason

__all__ = [
    "HOOK_GROUP",
    "Argument",
    "ExitRecord",
    "LaunchDescription",
    "LaunchError",
    "LaunchFileError",
    "LaunchService",
    "LaunchSummary",
    "Location",
    "NodeSpec",
    "ParamFile",
    "ParamValues",
    "ProcessDescription",
    "ProcessHook",
    "ProcessInfo",
    "ProcessSummary",
    "StopReason",
    "find_pkg_share",
    "launch_file",
    "load_hooks",
    "parse_cli_args",
    "parse_launch_file",
    "resolve_node",
]


def launch_file(
    path: str | Path,
    args: Mapping[str, str] | None = None,
    *,
    duration: float | None = None,
    hooks: Iterable[ProcessHook] = (),
    entry_point_hooks: bool = True,
    output: IO[str] | None = None,
    log_dir: Path | None = None,
) -> LaunchSummary:
    """Parse `path` with `args` and run it until every process exits, `duration` s pass, or Ctrl-C.

    `hooks` are added to those the `tether.launch_hooks` entry points make for these launch
    arguments (unless `entry_point_hooks` is False). Raises LaunchError for a bad launch file.
    """
    description = parse_launch_file(path, args)
    all_hooks = [*hooks, *(load_hooks(description.launch_args) if entry_point_hooks else ())]
    service = LaunchService(description, hooks=all_hooks, duration=duration, output=output, log_dir=log_dir)
    return service.run()
