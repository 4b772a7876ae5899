"""Finding the specification's nodes and topics on the bus before ConfigBot acts, or saying clearly what is missing.

A node is found by its telemetry (which carries its pid) or, for a plain rclpy node without
tether's telemetry, by `__node:=<name>` (and `__ns:=`) in a process's command line; a topic by
a publisher on the graph. What does not appear in time is a SpecRuntimeError naming it and
what the bus has instead: the specification names something this stack does not run.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

import psutil

if TYPE_CHECKING:
    from tether.edge.configbot.bot import ConfigBot

__all__ = ["find_pid", "wait_for_nodes"]


def find_pid(fqn: str) -> int | None:
    """A node's process by `__node:=<name>` (and `__ns:=<ns>` when namespaced) in its command line."""
    ns, _, name = fqn.rpartition("/")
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info.get("cmdline") or []
        if f"__node:={name}" in cmd and (not ns or f"__ns:={ns}" in cmd):
            return p.pid
    return None


def _missing(bot: ConfigBot) -> list[str]:
    """Local nodes without a known process; nodes elsewhere (local: false) never heard from."""
    out = []
    for fqn, info in bot.profiler.nodes.items():
        local = bot.spec.node_spec(fqn).local
        if (local and info.pid is None) or (not local and info.last_seen == -math.inf):
            out.append(fqn)
    return out


def wait_for_nodes(bot: ConfigBot) -> None:
    """Until every node has a pid and every topic a publisher (topics get `topic_grace_s`); else raise."""
    from tether.edge.configbot.bot import SpecRuntimeError

    profiler = bot.profiler
    deadline = time.monotonic() + bot.opt.wait_nodes_s
    topic_deadline = time.monotonic() + bot.opt.topic_grace_s
    while not bot.stopping:
        bot.tick()
        missing = _missing(bot)
        if missing and time.monotonic() > bot.t0 + 5:  # telemetry had its chance: look at the processes
            for fqn in missing:
                pid = find_pid(fqn) if bot.spec.node_spec(fqn).local else None
                if pid is not None:
                    profiler.set_pid(fqn, pid)
            missing = _missing(bot)
        topics = profiler.subscribe_known_topics()
        if not missing and (not topics or time.monotonic() > topic_deadline):
            break
        if time.monotonic() > deadline:
            seen = ", ".join(profiler.seen_nodes()) or "none"
            raise SpecRuntimeError(
                f"node(s) {', '.join(missing)} named by the specification are not on the bus after "
                f"{bot.opt.wait_nodes_s:g} s (nodes seen: {seen}); fix the names or start the nodes"
            )
    topics = profiler.subscribe_known_topics()
    if topics:
        known = ", ".join(t for t, _ in bot.node.get_topic_names_and_types()) or "none"
        raise SpecRuntimeError(
            f"topic(s) {', '.join(topics)} named by the specification have no publisher on the bus after "
            f"{bot.opt.topic_grace_s:g} s (topics: {known}); fix the names"
        )
