"""ROS 2 command-line arguments for node processes, so `ros2 launch` and `tether launch` run the same executables.

Understood: `--ros-args -r __node:=NAME -r __ns:=/NS -r from:=to -p name:=value --params-file FILE`
(and the long forms `--remap`, `--param`). A parameters file is ROS 2's YAML: `<node or /**>:
ros__parameters: {...}`. Values given with `-p` are YAML scalars (`-p rate:=10.0`).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = ["ArgumentError", "RosArgs", "load_params_file", "parse_ros_args"]


class ArgumentError(ValueError):
    """A node's command line or parameters file breaks a rule; the message names it and the fix."""


@dataclass
class RosArgs:
    node_name: str | None = None
    namespace: str | None = None
    remaps: dict[str, str] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    params_files: list[Path] = field(default_factory=list)
    # Everything outside --ros-args ... (--) for the program itself.
    user_args: list[str] = field(default_factory=list)

    def parameter_overrides(self, node_fqn: str) -> dict[str, Any]:
        """Parameter values for this node: files first (in order), then -p values, last wins."""
        values: dict[str, Any] = {}
        for path in self.params_files:
            values.update(load_params_file(path, node_fqn))
        values.update(self.params)
        return values


def _split_assignment(flag: str, text: str) -> tuple[str, str]:
    if ":=" not in text:
        raise ArgumentError(f"{flag} takes NAME:=VALUE, but got {text!r}; e.g. {flag} rate:=10.0")
    name, value = text.split(":=", 1)
    if not name:
        raise ArgumentError(f"{flag} {text!r} has an empty name; e.g. {flag} rate:=10.0")
    return name, value


def parse_ros_args(argv: list[str]) -> RosArgs:
    """Parse a node's argv (without the program name)."""
    out = RosArgs()
    i, in_ros = 0, False
    while i < len(argv):
        arg = argv[i]
        if arg == "--ros-args":
            in_ros = True
        elif arg == "--" and in_ros:
            in_ros = False
        elif in_ros and arg in ("-r", "--remap", "-p", "--param", "--params-file"):
            if i + 1 >= len(argv):
                raise ArgumentError(f"{arg} needs a value after it")
            value = argv[i + 1]
            i += 1
            if arg in ("-r", "--remap"):
                src, dst = _split_assignment(arg, value)
                if src == "__node" or src == "__name":
                    out.node_name = dst
                elif src == "__ns":
                    out.namespace = dst
                else:
                    out.remaps[src] = dst
            elif arg in ("-p", "--param"):
                name, text = _split_assignment(arg, value)
                out.params[name] = yaml.safe_load(text) if text != "" else ""
            else:
                path = Path(value)
                if not path.is_file():
                    raise ArgumentError(f"--params-file {value}: no such file")
                out.params_files.append(path)
        elif in_ros and arg in ("--log-level", "--enclave"):
            i += 1  # accepted for compatibility with ros2 launch; not used
        elif in_ros and arg.startswith("--"):
            pass  # other ROS flags (--disable-rosout-logs, ...) are harmless here
        elif in_ros:
            raise ArgumentError(f"unknown ROS argument {arg!r}; known: -r, -p, --params-file")
        else:
            out.user_args.append(arg)
        i += 1
    return out


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value


def load_params_file(path: Path, node_fqn: str) -> dict[str, Any]:
    """Parameters for `node_fqn` ('/ns/name') from a ROS 2 parameters YAML file.

    Sections are matched by node name, fully qualified name or wildcard ('/**', '/**/name').
    Nested dictionaries become dotted names, as ROS 2 does.
    """
    try:
        doc = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ArgumentError(f"{where}: not valid YAML ({exc}); a parameters file is ROS 2's YAML") from None
    if not isinstance(doc, dict):
        raise ArgumentError(f"{path}: a parameters file maps node names to 'ros__parameters'")
    name = node_fqn.rsplit("/", 1)[-1]
    values: dict[str, Any] = {}
    for section, body in doc.items():
        pattern = str(section)
        full_pattern = pattern if pattern.startswith("/") else "/" + pattern
        matches = pattern in (name, node_fqn, node_fqn.lstrip("/")) or fnmatch.fnmatchcase(
            node_fqn, full_pattern.replace("/**", "*")
        )
        if not matches:
            continue
        if not isinstance(body, dict) or "ros__parameters" not in body:
            raise ArgumentError(
                f"{path}: section {section!r} needs a 'ros__parameters' mapping, e.g. {name}: "
                "{ros__parameters: {rate: 10.0}}"
            )
        _flatten("", body["ros__parameters"] or {}, values)
    return values
