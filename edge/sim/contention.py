"""Background CPU contention: busy worker processes that are not robot nodes (the `contention` scenario).

Each worker is its own process hashing memory blocks forever (CPU-bound, single-threaded, in
the C code of hashlib, so it competes like a compiled job would). Workers run at normal
priority whatever the priority of the process starting them, each in a session of its own (as
independent jobs are: with the kernel's autogroup scheduling, on by default on desktop and Jetson
kernels, all processes of one session share one CPU share, so workers left in the simulator's
session would compete as a single job however many there are), are started and stopped by their
pid, and are reaped; `close()` is idempotent.

The job runs on the robot's computer: when the robot stack's cgroup (`tether/<stack>`, made at launch
by the hardware-profile emulation, or by ConfigBot once it runs) exists as the job starts, each worker
joins it in a group of its own
(`tether/<stack>/background-<i>`), so it draws on the emulated device's CPU (the stack's quota),
competes with each node as one more process would, and no node's knob reaches it. Without a stack
cgroup the workers compete with the whole machine.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import subprocess
import sys

__all__ = ["Contention", "worker_main"]

log = logging.getLogger(__name__)


def worker_main(parent: int | None = None) -> None:
    """Burn one core until killed, or until `parent` (the process that started it) is gone: a worker
    leads a session of its own, so nothing else would stop it if the simulator were killed outright."""
    parent = os.getppid() if parent is None else parent
    block = os.urandom(1 << 20)
    while os.getppid() == parent:
        block = hashlib.sha256(block).digest() * (1 << 15)


class Contention:
    """`workers_per_core` x this machine's cores busy processes while started."""

    def __init__(
        self, workers_per_core: float = 2.0, cores: int | None = None, stack: str | None = None
    ) -> None:
        if not workers_per_core > 0:
            raise ValueError(f"workers_per_core > 0 must hold, but got {workers_per_core}")
        self.count = max(1, math.ceil(workers_per_core * (cores or os.cpu_count() or 1)))
        self.stack = stack
        self.procs: list[subprocess.Popen] = []
        self.cgroups: list[str] = []  # the workers' groups, when they run inside the stack's cgroup
        self._manager = None

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    @property
    def running(self) -> bool:
        return bool(self.procs)

    def start(self) -> list[int]:
        """Start the workers (no-op when running); returns their pids."""
        if self.procs:
            return self.pids
        for _ in range(self.count):
            p = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    f"from tether.edge.sim.contention import worker_main; worker_main({os.getpid()})",
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            try:
                # A background job runs at normal priority, even when started by the (higher
                # priority) simulator; raising a nice value needs no privilege.
                os.setpriority(os.PRIO_PROCESS, p.pid, 0)
            except (PermissionError, ProcessLookupError):
                pass
            self.procs.append(p)
        self._contain()
        return self.pids

    def _contain(self) -> None:
        """Each worker into tether/<stack>/background-<i> when the stack has a cgroup."""
        if not self.stack:
            return
        from tether.edge.cgroups import CgroupError, CgroupManager, detect_layout

        try:
            if not detect_layout().cpu.joinpath("tether", self.stack).is_dir():
                return
            self._manager = CgroupManager(self.stack, join=True)
            for i, p in enumerate(self.procs):
                self._manager.place(f"background-{i}", p.pid, children=False)
                self.cgroups.append(self._manager.path(f"background-{i}"))
        except (CgroupError, OSError) as exc:
            log.warning("contention workers stay outside the stack cgroup tether/%s: %s", self.stack, exc)

    def stop(self) -> None:
        """Kill the workers by pid and reap them."""
        for p in self.procs:
            if p.poll() is None:
                p.kill()
        for p in self.procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self.procs = []
        if self._manager is not None:
            self._manager.close()  # the workers' groups, now empty
            self._manager = None
        self.cgroups = []

    close = stop

    def __enter__(self) -> Contention:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
