"""A node that does real CPU work per message, for ConfigBot's tests, its quick benchmark and its demo.

`Worker` publishes a stamped message on `out` at up to `rate` Hz (its own loop thread, so the
executor stays free for parameter requests however starved the work is), or one per message
received on `input` (a pipeline stage, so a rate cap on `input` lowers its load), and
spends `work_ms` of CPU on each (SHA-256 over a buffer, calibrated at start to milliseconds of
this machine's core). Starved of CPU, its rate falls below `rate`: its metrics really depend
on its CPU share and on its `work_ms` knob, as a perception node's depend on its resolution.
"""

from __future__ import annotations

import hashlib
import sys
import threading
import time
from collections.abc import Sequence

from tether.bus import Node, SetParametersResult, get_type, run_node

__all__ = ["Worker", "burn", "calibrate", "worker_main"]

PointStamped = get_type("geometry_msgs/msg/PointStamped")
_BLOCK = b"\x5a" * 4096
_per_ms: float | None = None


def calibrate() -> float:
    """SHA-256 blocks per millisecond of one core (measured on thread CPU time, so contention does not skew it)."""
    global _per_ms
    if _per_ms is None:
        n, t0 = 0, time.thread_time()
        while time.thread_time() - t0 < 0.05:
            for _ in range(50):
                hashlib.sha256(_BLOCK).digest()
            n += 50
        _per_ms = n / ((time.thread_time() - t0) * 1e3)
    return _per_ms


def burn(ms: float) -> None:
    """Spend about `ms` milliseconds of CPU (of an unshared core)."""
    for _ in range(max(1, int(ms * calibrate()))):
        hashlib.sha256(_BLOCK).digest()


class Worker(Node):
    """Parameters: rate (Hz), work_ms (CPU per message), input (topic to follow; empty = timer)."""

    def __init__(self, **kwargs) -> None:
        super().__init__("worker", **kwargs)
        self.rate = float(
            self.declare_parameter("rate", 20.0, description="messages per second", min=0.1, max=1000.0).value
        )
        self.work_ms = float(
            self.declare_parameter(
                "work_ms", 5.0, description="CPU ms per message", min=0.0, max=1000.0
            ).value
        )
        topic = str(self.declare_parameter("input", "", description="topic to process; empty: timer").value)
        self.pub = self.create_publisher(PointStamped, "out", 10)
        self.count = 0
        calibrate()
        self._stop = threading.Event()
        self._loop: threading.Thread | None = None
        if topic:
            self.create_subscription(PointStamped, topic, lambda msg: self.step(), 10)
        else:
            self._loop = threading.Thread(target=self._run, name="worker-loop", daemon=True)
            self._loop.start()
        self.add_on_set_parameters_callback(self._on_set)

    def _run(self) -> None:
        """Publish at `rate`; when the work overruns the period, the next message goes out at once (no catch-up)."""
        due = time.monotonic()
        while not self._stop.is_set():
            self.step()
            due = max(due + 1.0 / self.rate, time.monotonic())
            self._stop.wait(max(0.0, due - time.monotonic()))

    def close(self) -> None:
        self._stop.set()
        if self._loop is not None:
            self._loop.join(timeout=5)

    def step(self) -> None:
        burn(self.work_ms)
        self.count += 1
        msg = PointStamped(
            header=self._header(),
            point=get_type("geometry_msgs/msg/Point")(x=float(self.count), y=0.0, z=0.0),
        )
        self.pub.publish(msg)

    def _header(self):
        Header = get_type("std_msgs/msg/Header")
        Time = get_type("builtin_interfaces/msg/Time")
        ns = time.time_ns()
        return Header(stamp=Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000), frame_id="")

    def _on_set(self, params) -> SetParametersResult:
        for p in params:
            if p.name == "work_ms":
                self.work_ms = float(p.value)
            elif p.name == "rate":
                self.rate = float(p.value)
        return SetParametersResult(True)


def worker_main(args: Sequence[str] | None = None) -> None:
    sys.exit(run_node(Worker, args))
