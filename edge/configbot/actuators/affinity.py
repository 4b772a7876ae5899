"""CPU affinity per node: which cores a node's threads (and its children's) may run on.

Choices are CPU lists as Linux writes them (`"0"`, `"1-3"`, `"0,2"`). Affinity is per thread, so
every thread of the node's process and of its children is set (`sched_setaffinity` on a pid
alone changes only its main thread).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import psutil

from tether.edge.configbot.actuators.base import ActuationError, Actuator, ActuatorContext
from tether.edge.configbot.spec import Knob

__all__ = ["AffinityActuator", "format_cpus", "parse_cpus"]


def parse_cpus(text: str) -> set[int]:
    """'0-2,5' -> {0, 1, 2, 5}; ValueError stating the form."""
    out: set[int] = set()
    for part in str(text).split(","):
        part = part.strip()
        lo, sep, hi = part.partition("-")
        try:
            out |= set(range(int(lo), int(hi) + 1)) if sep else {int(lo)}
        except ValueError:
            raise ValueError(f"a CPU list is written like 0-2,5, but got {text!r}") from None
    return out


def format_cpus(cpus: set[int]) -> str:
    runs: list[str] = []
    for c in sorted(cpus):
        if runs and runs[-1][1] == c - 1:
            runs[-1] = (runs[-1][0], c)  # type: ignore[assignment]
        else:
            runs.append((c, c))  # type: ignore[arg-type]
    return ",".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs)  # type: ignore[misc]


def _threads(pid: int) -> list[int]:
    tids = []
    try:
        procs = [psutil.Process(pid)]
        procs += procs[0].children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    for p in procs:
        try:
            tids += [int(t) for t in os.listdir(f"/proc/{p.pid}/task")]
        except OSError:
            pass
    return tids


class AffinityActuator(Actuator):
    kinds = ("affinity",)

    def __init__(self, knobs: list[Knob], ctx: ActuatorContext) -> None:
        super().__init__(knobs, ctx)
        self._before: dict[str, set[int]] = {}

    def start(self) -> None:
        have = os.sched_getaffinity(0) | set(range(os.cpu_count() or 1))
        for key, knob in self.knobs.items():
            for choice in knob.choices or []:
                extra = parse_cpus(str(choice)) - have
                if extra:
                    self.unavailable = (
                        f"knob {key} offers CPUs {format_cpus(extra)} this machine lacks "
                        f"(it has {format_cpus(have)}); affinity is off"
                    )
                    return

    def read(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in self.knobs:
            pid = self.ctx.pid(self.node_of(key))
            out[key] = None if pid is None else format_cpus(os.sched_getaffinity(pid))
        return out

    def _set(self, pid: int, cpus: set[int]) -> None:
        for tid in _threads(pid):
            try:
                os.sched_setaffinity(tid, cpus)
            except ProcessLookupError:
                pass  # a thread that ended meanwhile
            except OSError as exc:
                raise ActuationError(f"cannot pin thread {tid} to CPUs {format_cpus(cpus)}: {exc}") from None

    def apply(self, values: Mapping[str, Any]) -> None:
        for key, value in values.items():
            fqn = self.node_of(key)
            pid = self.ctx.pid(fqn)
            if pid is None:
                raise ActuationError(f"node {fqn} has no known process to pin")
            if key not in self._before:
                self._before[key] = os.sched_getaffinity(pid)
            cpus = self._before[key] if value is None else parse_cpus(str(value))
            self._set(pid, cpus)

    def node_restarted(self, fqn: str, pid: int, values: Mapping[str, Any]) -> None:
        mine = {k: v for k, v in values.items() if self.node_of(k) == fqn and v is not None}
        if mine:
            self.apply(mine)

    def close(self) -> None:
        for key, cpus in self._before.items():
            pid = self.ctx.pid(self.node_of(key))
            if pid is not None:
                try:
                    self._set(pid, cpus)
                except ActuationError:
                    pass
