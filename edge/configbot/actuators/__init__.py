"""ConfigBot's actuators: one interface (`Actuator`), one implementation per kind of knob, applied atomically.

cgroup      cpu_quota, cpu_weight       tether.edge.cgroups (v1 or v2)
parameters  parameter, rate_cap         ROS 2 parameter services on the bus
affinity    affinity                    sched_setaffinity on every thread
power       power_mode                  nvpmodel (Jetson only)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from tether.edge.configbot.actuators.affinity import AffinityActuator
from tether.edge.configbot.actuators.base import ActuationError, Actuator, ActuatorContext
from tether.edge.configbot.actuators.cgroup import CgroupActuator
from tether.edge.configbot.actuators.parameters import ParameterActuator
from tether.edge.configbot.actuators.power import PowerModeActuator

__all__ = [
    "ActuationError",
    "Actuator",
    "ActuatorContext",
    "AffinityActuator",
    "Applier",
    "CgroupActuator",
    "ParameterActuator",
    "PowerModeActuator",
    "build_actuators",
]

# Parameters go first: a trial that cuts a node's CPU quota still finds it quick to answer.
IMPLEMENTATIONS: tuple[type[Actuator], ...] = (
    ParameterActuator,
    CgroupActuator,
    AffinityActuator,
    PowerModeActuator,
)


def build_actuators(ctx: ActuatorContext, *, cgroups: bool = True, **options: Any) -> list[Actuator]:
    """One actuator per kind of knob in the spec. `cgroups=False`: no cgroup actuator, nodes stay where they are
    (the default policy's Linux fair share). `options`: keyword arguments by class (`CgroupActuator={...}`)."""
    out: list[Actuator] = []
    for cls in IMPLEMENTATIONS:
        knobs = [k for k in ctx.spec.knobs if k.kind in cls.kinds]
        place_all = cls is CgroupActuator and cgroups  # every node gets a group, knob or not
        if cls is CgroupActuator and not cgroups:
            continue
        if knobs or place_all:
            out.append(cls(knobs, ctx, **options.get(cls.__name__, {})))
    return out


class Applier:
    """Applies whole configurations across actuators: every knob, or none (rolled back to the last applied)."""

    def __init__(self, actuators: list[Actuator], log: logging.Logger | None = None) -> None:
        self.actuators = actuators
        self.log = log or logging.getLogger("tether.configbot")
        self.current: dict[str, Any] = {}
        self.initial: dict[str, Any] = {}
        self.off: dict[str, str] = {}  # knob key -> why it cannot be turned

    def start(self) -> list[str]:
        """Start every actuator; returns the messages of those that are unavailable."""
        messages = []
        for a in self.actuators:
            a.start()
            if a.unavailable:
                messages.append(a.unavailable)
                self.log.warning("%s", a.unavailable)
                for key in a.knobs:
                    self.off[key] = a.unavailable
        return messages

    @property
    def live(self) -> list[Actuator]:
        return [a for a in self.actuators if not a.unavailable]

    def knob_keys(self) -> list[str]:
        return [k for a in self.live for k in a.knobs]

    def read(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for a in self.live:
            try:
                out.update(a.read())
            except ActuationError as exc:
                self.log.warning("cannot read %s: %s", type(a).__name__, exc)
        return out

    def validate(self) -> list[str]:
        """Every live actuator's problems with its knobs, once the nodes are up."""
        return [p for a in self.live for p in a.validate()]

    def remember_initial(self) -> dict[str, Any]:
        """Read the values found before any change: what close() and a rollback with no good config restore."""
        self.initial = self.read()
        self.current = dict(self.initial)
        return self.initial

    def _split(self, config: Mapping[str, Any]) -> list[tuple[Actuator, dict[str, Any]]]:
        parts = []
        for a in self.live:
            vals = {k: config[k] for k in a.knobs if k in config}
            if vals:
                parts.append((a, vals))
        return parts

    def apply(self, config: Mapping[str, Any]) -> None:
        """Apply `config` (knob key -> value); on ActuationError restore what was applied before and re-raise."""
        before = dict(self.current)
        done: list[Actuator] = []
        for a, vals in self._split(config):
            try:
                a.apply(vals)
                done.append(a)
            except ActuationError:
                for b in reversed([*done, a]):
                    undo = {k: before.get(k) for k in b.knobs if k in config}
                    try:
                        b.apply(undo)
                    except ActuationError as exc:
                        self.log.warning("rollback of %s incomplete: %s", type(b).__name__, exc)
                raise
        self.current.update({k: v for k, v in config.items() if k in self.knob_keys()})

    def node_restarted(self, fqn: str, pid: int, config: Mapping[str, Any] | None = None) -> list[str]:
        """Put a replaced node back in its group and re-apply `config` (default: the current one, which it
        then becomes); returns problems."""
        if config is not None:
            self.current.update({k: v for k, v in config.items() if k in self.current})
        problems = []
        for a in self.live:
            try:
                a.node_restarted(fqn, pid, {k: self.current.get(k) for k in a.knobs if k in self.current})
            except (ActuationError, OSError) as exc:  # the loop goes on; the node keeps what it has
                problems.append(f"{type(a).__name__}: {exc}")
        return problems

    def close(self) -> None:
        for a in reversed(self.actuators):
            try:
                a.close()
            except Exception as exc:  # one actuator's failure must not leave the others' changes in place
                self.log.warning("closing %s failed: %s", type(a).__name__, exc)
