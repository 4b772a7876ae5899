"""`python -m tether.launch.run_node <pkg>.<exec> [args] [--ros-args ...]`: run a `tether.nodes` entry point.

The launcher starts every tether node this way, so a node is its own process whatever
installed it; the entry point's `main(argv)` gets the arguments after the name, ROS 2 style.
"""

from __future__ import annotations

import sys
from importlib import metadata

from tether.launch.errors import did_you_mean
from tether.launch.packages import NODE_GROUP

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-"):
        print("usage: python -m tether.launch.run_node <pkg>.<exec> [--ros-args ...]", file=sys.stderr)
        return 2
    name, rest = argv[0], argv[1:]
    found = {ep.name: ep for ep in metadata.entry_points(group=NODE_GROUP)}
    if name not in found:
        print(
            f"no entry point {name!r} in group {NODE_GROUP}"
            + did_you_mean(name, found)
            + "; declare it in pyproject.toml and reinstall (pip install -e .)",
            file=sys.stderr,
        )
        return 2
    node_main = found[name].load()
    sys.argv = [name, *rest]  # nodes that read sys.argv (rclpy style) see their own name and arguments
    try:
        rc = node_main(rest)
    except KeyboardInterrupt:
        return 0  # SIGINT is how the launcher asks a node to stop: a clean exit
    return rc if isinstance(rc, int) else 0


if __name__ == "__main__":
    sys.exit(main())
