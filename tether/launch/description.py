"""A launch description: what a launch file asks for, parsed and resolved, with no side effects.

As in ros2 launch, the description (what to run) is kept apart from its execution
(`execution.LaunchService`): the parser builds these frozen dataclasses, `tether launch
--show` prints them, tests inspect them, and only the service starts processes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "OUTPUT_MODES",
    "Argument",
    "LaunchDescription",
    "Location",
    "NodeSpec",
    "ParamFile",
    "ParamValues",
    "ProcessDescription",
]

# Where a process's output goes: the terminal, a file in the run's log folder, or both.
OUTPUT_MODES = ("screen", "log", "both")


@dataclass(frozen=True)
class Location:
    """Where an entity was written: the launch file and its 1-based line."""

    file: Path
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class Argument:
    """A declared launch argument (`- arg:`) and the value it resolved to."""

    name: str
    value: str
    default: str | None
    description: str
    location: Location


@dataclass(frozen=True)
class ParamFile:
    """A ROS 2 parameters file (`param: [{from: FILE}]`), passed on as `--params-file FILE`."""

    path: Path


@dataclass(frozen=True)
class ParamValues:
    """Parameters written in the launch file (`{name, value}`), dotted names to typed values.

    The service writes them to a temporary `ros__parameters` file at start, as launch_ros does.
    """

    values: Mapping[str, Any]

    def as_ros_parameters(self) -> dict[str, Any]:
        """The `/**: {ros__parameters: {...}}` document, dotted names nested as ROS 2 files write them."""
        nested: dict[str, Any] = {}
        for dotted, value in self.values.items():
            *parents, leaf = dotted.split(".")
            level = nested
            for part in parents:
                level = level.setdefault(part, {})
            level[leaf] = value
        return {"/**": {"ros__parameters": nested}}


@dataclass(frozen=True)
class NodeSpec:
    """The ROS side of a `node`: package, executable, name, namespace, parameters and remaps."""

    pkg: str
    exec: str
    name: str | None  # None: the executable's own default name (no `__node` remap)
    namespace: str  # absolute; "/" when neither the node nor a group set one
    params: tuple[ParamFile | ParamValues, ...] = ()
    remaps: tuple[tuple[str, str], ...] = ()
    ros_args: tuple[str, ...] = ()  # `ros_args:` passed after --ros-args as written
    entry_point: str | None = None  # "<pkg>.<exec>" in group tether.nodes; None: a plain executable

    @property
    def fqn(self) -> str:
        """The fully qualified node name, e.g. '/robot/talker' (name falls back to exec)."""
        base = self.name or self.exec
        return f"{self.namespace.rstrip('/')}/{base}"

    def ros_argv(self, param_files: Sequence[Path]) -> list[str]:
        """`--ros-args ...` for this node; `param_files[i]` is the file holding `params[i]`."""
        if len(param_files) != len(self.params):
            raise ValueError(
                f"one file per parameter source is needed: {len(self.params)} != {len(param_files)}"
            )
        argv = ["--ros-args"]
        if self.name:
            argv += ["-r", f"__node:={self.name}"]
        if self.namespace != "/":
            argv += ["-r", f"__ns:={self.namespace}"]
        for src, dst in self.remaps:
            argv += ["-r", f"{src}:={dst}"]
        for path in param_files:
            argv += ["--params-file", str(path)]
        argv += list(self.ros_args)
        return argv


@dataclass(frozen=True)
class ProcessDescription:
    """One OS process to run: a `node` (with `node` set) or an `executable`."""

    name: str  # label base for the output prefix: `[name-1]`
    command: tuple[str, ...]  # program and its own arguments (a node's --ros-args come after)
    location: Location
    node: NodeSpec | None = None
    cwd: Path | None = None
    env: Mapping[str, str | None] = field(default_factory=dict)  # additions; None unsets
    shell: bool = False
    output: str = "screen"
    respawn: bool = False
    respawn_delay: float = 0.0  # seconds between an exit and the restart
    respawn_max_retries: int = -1  # -1: no limit
    # ros2 launch's names and meanings: seconds after SIGINT before SIGTERM, then before SIGKILL.
    sigterm_timeout: float = 5.0
    sigkill_timeout: float = 5.0
    launch_args: Mapping[str, str] = field(default_factory=dict)  # launch configurations in its scope

    @property
    def kind(self) -> str:
        return "node" if self.node is not None else "executable"


@dataclass(frozen=True)
class LaunchDescription:
    """A whole launch: the top file, every declared argument, and the processes in launch order."""

    file: Path
    arguments: tuple[Argument, ...]
    processes: tuple[ProcessDescription, ...]
    launch_args: Mapping[str, str]  # the top file's launch configurations after parsing
    included: tuple[Path, ...] = ()
    warnings: tuple[str, ...] = ()  # e.g. a given argument no file declares (a likely typo)

    def describe(self) -> str:
        """A readable listing (what `tether launch --show` prints)."""
        lines = [f"launch file {self.file}"]
        if self.included:
            lines.append("includes: " + ", ".join(str(p) for p in self.included))
        lines += [f"warning: {w}" for w in self.warnings]
        lines.append("arguments:")
        for a in self.arguments:
            default = "(required)" if a.default is None else f"(default {a.default!r})"
            desc = f"  # {a.description}" if a.description else ""
            lines.append(f"  {a.name} = {a.value!r} {default}{desc}")
        lines.append("processes:")
        for p in self.processes:
            lines.append(f"  - {p.name} [{p.kind}] from {p.location}")
            if p.node is not None:
                n = p.node
                target = f"entry point {n.entry_point}" if n.entry_point else f"executable {p.command[0]}"
                lines.append(f"      node {n.fqn} ({n.pkg}/{n.exec}: {target})")
                for src, dst in n.remaps:
                    lines.append(f"      remap {src} -> {dst}")
                for src in n.params:
                    if isinstance(src, ParamFile):
                        lines.append(f"      params from {src.path}")
                    else:
                        for k, v in src.values.items():
                            lines.append(f"      param {k} = {v!r}")
            cmd = " ".join(p.command) if not p.shell else p.command[0]
            lines.append(f"      cmd {cmd}")
            flags = [f"output={p.output}"]
            if p.respawn:
                flags.append(f"respawn (delay {p.respawn_delay:g} s)")
            if p.env:
                flags.append("env " + ", ".join(f"{k}={v}" for k, v in p.env.items()))
            if p.cwd:
                flags.append(f"cwd={p.cwd}")
            lines.append("      " + ", ".join(flags))
        return "\n".join(lines)
