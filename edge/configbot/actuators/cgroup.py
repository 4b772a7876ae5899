"""CPU quota and CPU weight per node, through the edge's one cgroup module (tether.edge.cgroups).

ConfigBot's main knob (arXiv 2501.10513): each node's process and its children go into their own
group, `tether/<stack>/<node>`, whose quota (v2 `cpu.max`, v1 `cpu.cfs_quota_us`, detected by the
cgroup module) caps it in cores. A weight (v2 `cpu.weight`, v1 `cpu.shares`) sets its share while
the CPU is contended. Moving the nodes under one stack group would make the whole stack compete
as one process against everything outside it, so the stack's weight is set to the number of
nodes placed: the robot keeps the fair share its processes had, and weights split it.

The groups are removed when ConfigBot closes and, if it crashes, by a guard process that waits
for ConfigBot's end (its pipe closes) and removes the groups of runs whose owner is gone. With
no permission for cgroups the actuator reports why and the other knobs go on.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psutil

from tether.edge.cgroups import CgroupError, CgroupManager, cleanup_stale, default_state_dir
from tether.edge.configbot.actuators.base import ActuationError, Actuator, ActuatorContext
from tether.edge.configbot.spec import Knob

__all__ = ["CgroupActuator", "group_name", "guard_main", "start_guard"]


def guard_main() -> None:
    """The crash guard: block until the parent's pipe closes, then remove the groups of dead runs."""
    state_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    try:
        owner = psutil.Process(os.getppid())
    except psutil.Error:
        owner = None
    try:
        sys.stdin.buffer.read()
    except (OSError, KeyboardInterrupt):
        pass
    # The pipe closes while the owner is still exiting, and an exited process stays in its group until it is
    # reaped: retry until the owner's records are gone (removed) or a minute has passed.
    pid = owner.pid if owner is not None else None
    deadline = time.monotonic() + 60.0
    while time.monotonic() < deadline:
        cleanup_stale(state_dir=state_dir)
        try:
            if owner is not None and owner.status() != psutil.STATUS_ZOMBIE:
                return  # a normal close: the owner removed its groups itself
        except psutil.Error:
            pass
        records = (state_dir or default_state_dir()).glob(f"{pid}-*.json") if pid else []
        if not list(records):
            return
        time.sleep(0.2)


def start_guard(state_dir: Path) -> subprocess.Popen:
    """The crash guard of this process: closing its stdin (at close, or by dying) makes it clean up."""
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from tether.edge.configbot.actuators.cgroup import guard_main; guard_main()",
            str(state_dir),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # a Ctrl-C to the launch's process group must not end it first
    )


def group_name(fqn: str, clash: bool = False) -> str:
    """A node's group: its name (as the launcher's hardware-profile hook names it), or its dotted fqn on a clash."""
    name = fqn.strip("/").replace("/", ".") if clash else fqn.rsplit("/", 1)[-1]
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:64]


class CgroupActuator(Actuator):
    kinds = ("cpu_quota", "cpu_weight")

    def __init__(self, knobs: list[Knob], ctx: ActuatorContext, *, root: Path | None = None) -> None:
        super().__init__(knobs, ctx)
        self.root = root
        self.manager: CgroupManager | None = None
        self.groups: dict[str, str] = {}  # fqn -> group, for the nodes placed
        self._guard: subprocess.Popen | None = None
        self._before: dict[str | None, tuple[float | None, float]] = {}  # group -> (quota, weight) found
        nodes = ctx.spec.node_names()
        plain = [n.rsplit("/", 1)[-1] for n in nodes]
        self._names = {n: group_name(n, plain.count(n.rsplit("/", 1)[-1]) > 1) for n in nodes}

    # -- lifecycle ------------------------------------------------------------------------------------
    def start(self) -> None:
        kw: dict[str, Any] = {"join": True}
        if self.root is not None:
            kw["root"] = self.root
        try:
            self.manager = CgroupManager(self.spec.stack, **kw)
        except CgroupError as exc:
            self.unavailable = (
                f"{exc}; CPU quota and weight knobs are off, tuning goes on with the other knobs"
            )
            return
        self._remember(None)
        self._guard = start_guard(self.manager.state_dir)
        self.ctx.profiler.cgroup_usage = self.usage

    def _remember(self, group: str | None) -> None:
        assert self.manager is not None
        if group not in self._before:
            self._before[group] = (self.manager.quota(group), self.manager.weight(group))

    def close(self) -> None:
        if self.manager is None:
            return
        self.ctx.profiler.cgroup_usage = lambda fqn: None
        # Groups another run made (the hardware-profile hook's) get back what they had; ours go.
        for group, (quota, weight) in self._before.items():
            try:
                if group is not None:  # the stack's quota is the power mode's (emulation), never ours
                    self.manager.set_quota(group, quota)
                self.manager.set_weight(group, weight)
            except (CgroupError, OSError):
                pass
        self.manager.close()
        self.manager = None
        if self._guard is not None:
            self._guard.stdin.close()  # type: ignore[union-attr]
            try:
                self._guard.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._guard.kill()
                self._guard.wait()
            self._guard = None

    # -- placement --------------------------------------------------------------------------------------
    def place(self, fqn: str, pid: int) -> bool:
        """Move a node's process and children into its group; False when it cannot be placed."""
        if self.manager is None or not self.spec.node_spec(fqn).cgroup:
            return False
        group = self._names.get(fqn) or group_name(fqn)
        try:
            self.manager.place(group, pid)
        except (CgroupError, OSError) as exc:
            self.ctx.log.warning("cannot place %s (pid %d) in a cgroup: %s", fqn, pid, exc)
            return False
        self._remember(group)
        first = fqn not in self.groups
        self.groups[fqn] = group
        if first:
            self.ctx.profiler.reset_cpu(fqn)  # its CPU now comes from the group's accounting
            self.manager.set_weight(None, max(1.0, float(len(self.groups))))
        return True

    def node_restarted(self, fqn: str, pid: int, values: Mapping[str, Any]) -> None:
        if self.place(fqn, pid) and values:
            self.apply(values)

    def usage(self, fqn: str) -> float | None:
        group = self.groups.get(fqn)
        if group is None or self.manager is None:
            return None
        try:
            return self.manager.usage(group)
        except (OSError, ValueError):
            return None

    # -- knobs -----------------------------------------------------------------------------------------------
    def _group_for(self, key: str) -> str:
        fqn = self.node_of(key)
        group = self.groups.get(fqn)
        if group is None:
            pid = self.ctx.pid(fqn)
            if pid is None or not self.place(fqn, pid):
                raise ActuationError(f"node {fqn} has no process in a cgroup yet (no telemetry with its pid)")
            group = self.groups[fqn]
        return group

    def read(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.manager is None:
            return out
        for key, knob in self.knobs.items():
            group = self.groups.get(self.node_of(key))
            if group is None:
                out[key] = None if knob.kind == "cpu_quota" else 1.0
                continue
            out[key] = self.manager.quota(group) if knob.kind == "cpu_quota" else self.manager.weight(group)
        return out

    def apply(self, values: Mapping[str, Any]) -> None:
        if self.manager is None:
            raise ActuationError(self.unavailable or "the cgroup actuator is not started")
        for key, value in values.items():
            knob = self.knobs[key]
            group = self._group_for(key)
            try:
                if knob.kind == "cpu_quota":
                    floor = self.spec.node_spec(self.node_of(key)).quota_floor
                    cores = None if value is None else float(value)
                    if cores is not None and floor is not None:
                        cores = max(cores, floor)  # the essential node's floor, whatever was asked
                    self.manager.set_quota(group, cores)
                else:
                    self.manager.set_weight(group, 1.0 if value is None else float(value))
            except (CgroupError, OSError) as exc:
                raise ActuationError(f"cannot set {key} = {value}: {exc}") from None
