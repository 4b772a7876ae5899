"""The actuator interface: one kind of knob (CPU quota, rate cap, parameter, affinity, power mode) turned one way.

ConfigBot's loop owns every actuator and calls them from its one thread, in this order:
`start()` once (may report the actuator unavailable, with the reason), `validate()` once the nodes
are up (the knobs against what the nodes declare), `read()` before the first change (the values to restore at the end and to roll back to), `apply(values)` per configuration
(all of its knobs, or raise ActuationError having changed nothing it could not undo),
`node_restarted(fqn, pid)` when a node's process is replaced (put it back in its group, re-apply
its values), and `close()` at the end (restore what was there before, remove what it created).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from tether.edge.configbot.spec import Knob, Spec

__all__ = ["ActuationError", "Actuator", "ActuatorContext"]


class ActuationError(RuntimeError):
    """A knob could not be set (node gone, value refused, no permission). Recoverable: the configuration is
    rolled back and the trial counts as failed."""


@dataclass
class ActuatorContext:
    """What actuators share: the spec, the bus node (for parameter clients) and the profiler (node pids)."""

    spec: Spec
    node: Any  # tether.bus.Node
    profiler: Any  # tether.edge.configbot.profiler.Profiler
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("tether.configbot"))

    def pid(self, fqn: str) -> int | None:
        info = self.profiler.nodes.get(fqn)
        return None if info is None else info.pid


class Actuator(ABC):
    """Turns the knobs of its `kinds`. Not thread-safe: ConfigBot's loop is its only caller."""

    kinds: ClassVar[tuple[str, ...]] = ()

    def __init__(self, knobs: list[Knob], ctx: ActuatorContext) -> None:
        self.knobs = {k.key: k for k in knobs}
        self.ctx = ctx
        self.spec = ctx.spec
        self.unavailable: str | None = None  # why this actuator cannot act, once start() said so

    def start(self) -> None:  # noqa: B027 - optional
        """Acquire what the actuator needs; set `self.unavailable` (a sentence) instead of raising."""

    @abstractmethod
    def read(self) -> dict[str, Any]:
        """The current value of each knob (None: not limited / the node's default)."""

    @abstractmethod
    def apply(self, values: Mapping[str, Any]) -> None:
        """Set the given knobs (keys of `self.knobs`); ActuationError when one cannot be set."""

    def validate(self) -> list[str]:
        """Once the nodes are up: problems with the knobs as the nodes declare them (e.g. bounds outside a
        parameter's range); each is a sentence naming the knob and the fix."""
        return []

    def node_restarted(self, fqn: str, pid: int, values: Mapping[str, Any]) -> None:  # noqa: B027
        """A node's process was replaced: re-establish `values` (this actuator's knobs) for it."""

    def close(self) -> None:  # noqa: B027 - optional
        """Restore what was there before and release what start() acquired."""

    def node_of(self, key: str) -> str:
        return self.spec.fqn(self.knobs[key].node or "")
