"""Process hooks: the launcher tells them each process id as it starts and exits (e.g. cgroup placement).

The launcher writes no cgroup code; the edge side's cgroup module registers a factory in the
entry-point group `tether.launch_hooks`:

    [project.entry-points."tether.launch_hooks"]
    cgroups = "tether.edge.configbot.cgroups:launch_hook"   # factory(launch_args) -> ProcessHook | None

A factory reads the launch arguments (e.g. `hardware_profile:=orin-nano:15W`) and returns a
hook, or None when it has nothing to do for this launch.
"""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata

from tether.launch.errors import LaunchError

__all__ = ["HOOK_GROUP", "ProcessHook", "ProcessInfo", "load_hooks"]

HOOK_GROUP = "tether.launch_hooks"


@dataclass(frozen=True)
class ProcessInfo:
    """What a hook learns about a launched process (the same object at start and at exit)."""

    label: str  # the output prefix, e.g. "talker-1"
    kind: str  # "node" or "executable"
    node_name: str | None  # the ROS node name given in the launch file (None: the executable's default)
    namespace: str | None  # the node's absolute namespace; None for an executable
    pkg: str | None
    exec: str | None
    command: tuple[str, ...]
    launch_args: Mapping[str, str] = field(default_factory=dict)  # launch configurations in its scope


class ProcessHook(ABC):
    """Told about each launched process. Both methods run on the launcher's supervising thread,
    right after the process starts (before it can have done much) and right after it is reaped;
    they must return quickly. An exception is reported and the launch goes on."""

    @abstractmethod
    def on_start(self, info: ProcessInfo, pid: int) -> None:
        """Called once per start (respawns included) with the new process id."""

    def on_exit(self, info: ProcessInfo, pid: int, returncode: int) -> None:  # noqa: B027 - optional
        """Called when process `pid` has exited; `returncode` < 0 means killed by signal -returncode."""


def load_hooks(launch_args: Mapping[str, str], group: str = HOOK_GROUP) -> list[ProcessHook]:
    """Hooks from the entry points of `group`: each factory gets the launch arguments.

    A plug-in that fails to import is reported and skipped (it may belong to a side not installed
    here); a factory that rejects the launch arguments stops the launch with its message.
    """
    hooks: list[ProcessHook] = []
    for ep in sorted(metadata.entry_points(group=group), key=lambda e: e.name):
        try:
            factory = ep.load()
        except Exception as exc:  # a broken plug-in must not stop launches it has nothing to do with
            print(
                f"[WARN] [launch]: hook {ep.name!r} unavailable ({type(exc).__name__}: {exc})",
                file=sys.stderr,
            )
            continue
        try:
            hook = factory(dict(launch_args))
        except Exception as exc:
            raise LaunchError(
                f"launch hook {ep.name!r} ({ep.value}) rejected the launch arguments: {exc}"
            ) from exc
        if hook is None:
            continue
        if not isinstance(hook, ProcessHook):
            raise LaunchError(
                f"launch hook {ep.name!r} ({ep.value}) returned {type(hook).__name__}, "
                "not a ProcessHook; subclass tether.launch.ProcessHook"
            )
        hooks.append(hook)
    return hooks
