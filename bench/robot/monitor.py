"""Topic rates and per-process CPU of a running stack, measured from outside it (as ConfigBot's profiler does).

A bus node subscribes to the topics raw (no decoding: only arrival times count); the rate of a
topic over a window is 1 / mean inter-arrival time (ConfigBot's definition), its spread the
standard deviation of the per-second rates. CPU per process comes from psutil's CPU times.
"""

from __future__ import annotations

import bisect
import statistics
import threading
import time

import psutil

__all__ = ["CpuSampler", "TopicMonitor"]


class TopicMonitor:
    """Records the arrival times (monotonic s) of every message on `topics` (name -> ROS type)."""

    def __init__(self, topics: dict[str, str]) -> None:
        from tether.bus import Node, QoSProfile, spin_in_background
        from tether.bus.messages import get_type

        self.node = Node("bench_robot_monitor", enable_telemetry=False, start_parameter_services=False)
        self.arrivals: dict[str, list[float]] = {t: [] for t in topics}
        self._lock = threading.Lock()
        for topic, type_name in topics.items():
            self.node.create_subscription(
                get_type(type_name), topic, lambda _msg, t=topic: self._on(t), QoSProfile(depth=100), raw=True
            )
        self._spin = spin_in_background(self.node)

    def _on(self, topic: str) -> None:
        now = time.monotonic()
        with self._lock:
            self.arrivals[topic].append(now)

    def rate(self, topic: str, t0: float, t1: float) -> float:
        """Messages per second in [t0, t1): 1 / mean inter-arrival time (0 with fewer than 2)."""
        with self._lock:
            a = self.arrivals[topic]
            seg = a[bisect.bisect_left(a, t0) : bisect.bisect_left(a, t1)]
        if len(seg) < 2:
            return 0.0
        return (len(seg) - 1) / (seg[-1] - seg[0])

    def spread(self, topic: str, t0: float, t1: float) -> float:
        """Standard deviation (Hz) of the per-second message counts in [t0, t1)."""
        counts = [self.rate_count(topic, t, t + 1.0) for t in _seconds(t0, t1)]
        return statistics.stdev(counts) if len(counts) >= 2 else 0.0

    def rate_count(self, topic: str, t0: float, t1: float) -> int:
        with self._lock:
            a = self.arrivals[topic]
            return bisect.bisect_left(a, t1) - bisect.bisect_left(a, t0)

    def close(self) -> None:
        self._spin.stop()
        self.node.destroy_node()


def _seconds(t0: float, t1: float) -> list[float]:
    out, t = [], t0
    while t + 1.0 <= t1:
        out.append(t)
        t += 1.0
    return out


class CpuSampler:
    """CPU time of processes sampled at chosen instants; percent of one core between two."""

    def __init__(self) -> None:
        self.samples: dict[str, list[tuple[float, float]]] = {}
        self.procs: dict[str, psutil.Process] = {}
        self._kids: dict[int, float] = {}  # the simulator's children (the background job): pid -> CPU s

    def add(self, name: str, pid: int) -> None:
        try:
            self.procs[name] = psutil.Process(pid)
        except psutil.NoSuchProcess:
            pass

    def sample(self) -> None:
        """Each process's own CPU time; the children of the simulator (the contention scenario's
        background job) are summed apart, as "background"."""
        now = time.monotonic()
        for name, p in list(self.procs.items()):
            try:
                t = p.cpu_times()
                self.samples.setdefault(name, []).append((now, t.user + t.system))
                if name == "sim":
                    # Per child, the last CPU time seen: a worker that ended keeps counting what it
                    # used, so the sum never falls when the job stops inside a window.
                    for c in p.children(recursive=True):
                        try:
                            ct = c.cpu_times()
                        except psutil.NoSuchProcess:
                            continue
                        self._kids[c.pid] = ct.user + ct.system
                    self.samples.setdefault("background", []).append((now, sum(self._kids.values())))
            except psutil.NoSuchProcess:
                continue

    def percent(self, name: str, t0: float, t1: float) -> float | None:
        """Mean CPU (% of one core) between the samples nearest to t0 and t1."""
        s = self.samples.get(name, [])
        inside = [x for x in s if t0 - 0.6 <= x[0] <= t1 + 0.6]
        if len(inside) < 2:
            return None
        (ta, ca), (tb, cb) = inside[0], inside[-1]
        return 100.0 * (cb - ca) / (tb - ta) if tb > ta else None
