"""Finding packages and node executables: tether's `tether.nodes` entry points, the ament index, the repo.

A node `pkg`/`exec` runs the entry point `<pkg>.<exec>` of group `tether.nodes` when one is
installed; otherwise the executable `<prefix>/lib/<pkg>/<exec>` of a ROS 2 install on
AMENT_PREFIX_PATH, otherwise `exec` on PATH. `$(find-pkg-share pkg)` is `<prefix>/share/<pkg>`
for a package in the ament index, else this repository's `ros_ws/src/<pkg>`; package `tether`
is the repository root, so `$(find-pkg-share tether)/launch/x.launch.yaml` reads as it would
under ROS 2 (launch files live in `share/<pkg>/launch/`).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

from tether.launch.errors import LaunchError, did_you_mean

__all__ = [
    "NODE_GROUP",
    "RUN_NODE_MODULE",
    "find_pkg_share",
    "node_entry_points",
    "repo_root",
    "resolve_node",
]

NODE_GROUP = "tether.nodes"
RUN_NODE_MODULE = "tether.launch.run_node"


def repo_root() -> Path | None:
    """The source checkout holding this package (editable install), or None for an installed wheel."""
    # From this file, not `tether.__file__`: a `tests/tether/` folder on pytest's pythonpath turns
    # `tether` into a namespace package there (no __file__), while submodules still resolve here.
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() else None


def _ament_marker(prefix: Path, pkg: str) -> Path:
    return prefix / "share" / "ament_index" / "resource_index" / "packages" / pkg


def find_pkg_share(pkg: str, ament_prefix_path: Sequence[Path]) -> Path:
    """The share folder of `pkg` (see the module docstring for the order); LaunchError when none."""
    for prefix in ament_prefix_path:
        if _ament_marker(prefix, pkg).exists():
            return prefix / "share" / pkg
    root = repo_root()
    if root is not None:
        if (root / "ros_ws" / "src" / pkg).is_dir():
            return root / "ros_ws" / "src" / pkg
        if pkg == "tether":
            return root
    looked = ", ".join(str(p) for p in ament_prefix_path) or "AMENT_PREFIX_PATH is empty"
    repo = f"{root}/ros_ws/src/{pkg}" if root else "no source checkout"
    raise LaunchError(
        f"package {pkg!r} not found: not in the ament index ({looked}) nor at {repo}; "
        "source the ROS 2 workspace that installs it (sets AMENT_PREFIX_PATH) or fix the package name"
    )


def node_entry_points() -> dict[str, metadata.EntryPoint]:
    return {ep.name: ep for ep in metadata.entry_points(group=NODE_GROUP)}


def resolve_node(
    pkg: str, exec_: str, ament_prefix_path: Sequence[Path]
) -> tuple[tuple[str, ...], str | None]:
    """The command that runs node `pkg`/`exec_` (before its arguments) and its entry point name, if any."""
    name = f"{pkg}.{exec_}"
    entry_points = node_entry_points()
    if name in entry_points:
        return (sys.executable, "-m", RUN_NODE_MODULE, name), name
    for prefix in ament_prefix_path:
        candidate = prefix / "lib" / pkg / exec_
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return (str(candidate),), None
    on_path = shutil.which(exec_)
    if on_path:
        return (on_path,), None
    raise LaunchError(
        f"no executable for node pkg={pkg!r} exec={exec_!r}: no entry point {name!r} in group {NODE_GROUP}, "
        f"no executable lib/{pkg}/{exec_} under AMENT_PREFIX_PATH, no {exec_!r} on PATH"
        + did_you_mean(name, entry_points).replace("; known:", "; tether nodes:")
        + '; declare it in pyproject\'s [project.entry-points."tether.nodes"] and reinstall '
        "(pip install -e .), or source the ROS 2 workspace that builds it"
    )
