"""Background CPU contention: busy worker processes that are not robot nodes (the `contention` scenario).

Each worker is its own process hashing memory blocks forever (CPU-bound, single-threaded, in
the C code of hashlib, so it competes like a compiled job would). Workers run at normal
priority whatever the priority of the process starting them, each in a session of its own (as
independent jobs are: with the kernel's autogroup scheduling, on by default on desktop and Jetson
kernels, all processes of one session share one CPU share, so workers left in the simulator's
session would compete as a single job however many there are), are started and stopped by their
pid, and are reaped; `close()` is idempotent.
"""

from __future__ import annotations

import hashlib
import math
import os
import subprocess
import sys

__all__ = ["Contention", "worker_main"]


def worker_main() -> None:
    """Burn one core until killed."""
    block = os.urandom(1 << 20)
    while True:
        block = hashlib.sha256(block).digest() * (1 << 15)


class Contention:
    """`workers_per_core` x this machine's cores busy processes while started."""

    def __init__(self, workers_per_core: float = 2.0, cores: int | None = None) -> None:
        if not workers_per_core > 0:
            raise ValueError(f"workers_per_core > 0 must hold, but got {workers_per_core}")
        self.count = max(1, math.ceil(workers_per_core * (cores or os.cpu_count() or 1)))
        self.procs: list[subprocess.Popen] = []

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
                [sys.executable, "-c", "from tether.edge.sim.contention import worker_main; worker_main()"],
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
        return self.pids

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

    close = stop

    def __enter__(self) -> Contention:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
