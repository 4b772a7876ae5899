"""ROS 2 names: resolving topics against a node's namespace and remaps, and mapping them to keys.

Topic `/spot1/configbot/telemetry` is Zenoh key `spot1/configbot/telemetry` (DESIGN.md), so a ROS 2
robot bridged with zenoh-bridge-ros2dds lands on the same keys. `~` expands to the node's own name.
"""

from __future__ import annotations

import re

__all__ = ["NameError_", "dotted", "key_of", "resolve", "validate_node_name"]

_TOKEN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class NameError_(ValueError):
    """A node, namespace or topic name breaks ROS 2's naming rules; the message says which."""


def validate_node_name(name: str) -> str:
    if not _TOKEN.match(name or ""):
        raise NameError_(
            f"a node name must be letters, digits and underscores, not starting with a digit, but got "
            f"{name!r}; e.g. 'lidar_filter'"
        )
    return name


def _normalise_ns(namespace: str) -> str:
    ns = "/" + namespace.strip("/") if namespace.strip("/") else ""
    for token in ns.split("/")[1:]:
        if not _TOKEN.match(token):
            raise NameError_(f"namespace {namespace!r} has an invalid part {token!r}; use e.g. '/spot1'")
    return ns


def resolve(name: str, namespace: str = "", node: str = "", remaps: dict[str, str] | None = None) -> str:
    """The fully qualified name of a topic or service: '/ns/name' for relative names."""
    if not name:
        raise NameError_("a topic or service name must not be empty")
    ns = _normalise_ns(namespace)
    full = resolve_plain(name, ns, node)
    for token in full.split("/")[1:]:
        if not re.match(r"^[A-Za-z0-9_]+$", token) and token not in ("*", "**"):
            raise NameError_(f"name {name!r} has an invalid part {token!r}: use letters, digits and '_'")
    if remaps:
        for src, dst in remaps.items():
            if src in (name, full) or resolve_plain(src, ns, node) == full:
                return resolve_plain(dst, ns, node)
    return full


def resolve_plain(name: str, ns: str, node: str) -> str:
    """resolve() without remaps (used to compare remap rules)."""
    if name.startswith("~"):
        full = f"{ns}/{node}{name[1:]}"
    elif name.startswith("/"):
        full = name
    else:
        full = f"{ns}/{name}"
    return "/" + "/".join(part for part in full.split("/") if part)


def key_of(full_name: str) -> str:
    """Zenoh key expression of a resolved ROS 2 name: the name without its leading slash."""
    return full_name.lstrip("/")


def dotted(name: str) -> str:
    """A topic as used in metric and parameter names: 'scan', '/robot/scan' -> 'robot.scan'."""
    return name.strip("/").replace("/", ".")
