"""The profiler: what the specification's signals measure over a window of time, from the bus and the OS.

As ConfigBot's helper (arXiv 2501.10513), it subscribes to the topics and takes a topic's rate
as 1 / mean inter-arrival time (messages stay undecoded: `raw=True`); a topic that stalls reads
as slowing, since the open gap to the window's end counts when it is longer than the mean.
Latency comes from `header.stamp` where a topic carries one (read from the CDR bytes), against
wall time, or against the simulator's `/clock` for stamps in simulated time (10 ms resolution). Node
metrics are the nodes' own 1 Hz telemetry. CPU per node comes from cgroup accounting when the
node has a group, else from psutil over the process and its children. The background load is
demand, not use: the host's runnable tasks (`procs_running`) minus the specification's nodes'
runnable threads; CPU use would fall as soon as ConfigBot gave the robot more of a saturated CPU,
and the context would seem to change under its own hand.
"""

from __future__ import annotations

import collections
import logging
import math
import os
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import psutil

from tether.edge.configbot.spec import STACK, Signal, Spec

__all__ = ["NodeInfo", "Profiler", "rate_from_arrivals"]

log = logging.getLogger("tether.configbot.profiler")

HISTORY_S = 900.0  # samples older than this are dropped
_BUSY_FIELDS = ("user", "nice", "system", "irq", "softirq", "steal")


def rate_from_arrivals(arrivals: np.ndarray, t0: float, t1: float, before: float | None = None) -> float:
    """Messages per second over (t0, t1] from arrival times (s, ascending).

    1 / mean inter-arrival (the last arrival before the window anchors the first interval); when
    the open gap from the last arrival to t1 exceeds that mean, it counts as one more interval,
    so a topic that stops mid-window reads lower, not unchanged. Under three intervals (a slow
    topic, a burst of queued messages at start-up) the arrivals per second of the window.
    """
    seq = arrivals if before is None else np.concatenate([[before], arrivals])
    if seq.size < 4:  # under three intervals (a slow topic, or a burst at start-up): count per second instead
        return arrivals.size / max(t1 - t0, 1e-9)
    iats = np.diff(seq)
    mean = float(iats.mean())
    gap = t1 - float(seq[-1])
    if gap > mean:
        return iats.size / (float(iats.sum()) + gap)
    return 1.0 / max(mean, 1e-9)


def _pid_alive(pid: int) -> bool:
    """The process exists and has not exited (a zombie has)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _stamp_ns(payload) -> int | None:
    """header.stamp of a stamped message from its CDR bytes (encapsulation header, then sec, nanosec)."""
    if len(payload) < 12:
        return None
    little = bytes(payload[1:2]) == b"\x01"
    sec, nsec = struct.unpack("<iI" if little else ">iI", bytes(payload[4:12]))
    return sec * 1_000_000_000 + nsec


@dataclass
class NodeInfo:
    """What the profiler knows of a node: its process and when it was last heard from."""

    fqn: str
    pid: int | None = None
    last_seen: float = -math.inf  # monotonic time of its last telemetry
    pid_changes: int = 0


class _TopicLog:
    def __init__(self) -> None:
        self.arrivals: collections.deque[float] = collections.deque()
        self.latency: collections.deque[tuple[float, float]] = collections.deque()  # (t, ms)
        self.type_name: str | None = None


class Profiler:
    """Measures a specification's signals. Owns subscriptions on `node` (spun by the caller) and a sampler thread.

    `cgroup_usage(fqn)` (set by the CPU actuator once it places nodes) gives a node's group CPU
    seconds, or None when the node has no group. Thread-safe; `close()` stops the sampler.
    """

    def __init__(self, node, spec: Spec, *, sample_period: float = 0.25) -> None:
        from tether.bus import QoSProfile, get_type

        self.node = node
        self.spec = spec
        self._lock = threading.Lock()
        self._topics: dict[str, _TopicLog] = {}
        self._telemetry: dict[str, collections.deque[tuple[float, dict[str, float]]]] = {}
        self.nodes: dict[str, NodeInfo] = {fqn: NodeInfo(fqn) for fqn in spec.node_names()}
        self._cpu: dict[str, collections.deque[tuple[float, float]]] = {}
        self._host: collections.deque[tuple[float, float, float]] = collections.deque()  # (t, busy_s, own_s)
        self._scan_near: collections.deque[tuple[float, float]] = collections.deque()
        self._runnable: collections.deque[tuple[float, float]] = collections.deque()  # (t, background tasks)
        self.cgroup_usage: Callable[[str], float | None] = lambda fqn: None
        self._procs: dict[int, psutil.Process] = {}
        self._own = psutil.Process()
        self._stop = threading.Event()
        self._sample_period = sample_period
        self._on_pid_change: list[Callable[[str, int | None, int], None]] = []
        self.wanted_topics = sorted({s.name for s in spec.signals() if s.kind in ("rate", "latency")})
        scan = spec.context.obstacle_density
        if scan is not None:
            self.wanted_topics = sorted(set(self.wanted_topics) | {scan.scan})
        self._subscribed: set[str] = set()
        self.sim_clock: float | None = (
            None  # latest /clock (simulated seconds), where a simulator publishes one
        )
        node.create_subscription(
            get_type("rosgraph_msgs/msg/Clock"), "/clock", self._on_clock, QoSProfile(depth=5), raw=True
        )
        node.create_subscription(
            get_type("tether_msgs/msg/Telemetry"), "/**/telemetry", self._on_telemetry, QoSProfile(depth=200)
        )
        self.subscribe_known_topics()
        self._thread = threading.Thread(target=self._sample_loop, name="configbot-profiler", daemon=True)
        self._thread.start()

    # -- subscriptions --------------------------------------------------------------------------
    def subscribe_known_topics(self) -> list[str]:
        """Subscribe to the wanted topics that now have a publisher; returns those still unknown."""
        missing = [t for t in self.wanted_topics if t not in self._subscribed]
        if not missing:
            return []
        types = dict(self.node.get_topic_names_and_types())
        still = []
        for topic in missing:
            if topic not in types or not types[topic]:
                still.append(topic)
                continue
            tlog = self._topics.setdefault(topic, _TopicLog())
            tlog.type_name = types[topic][0]
            self.node.create_subscription(tlog.type_name, topic, self._arrival_cb(topic, tlog), 100, raw=True)
            self._subscribed.add(topic)
        return still

    def _arrival_cb(self, topic: str, tlog: _TopicLog):
        scan = self.spec.context.obstacle_density
        stamped = self._is_stamped(tlog.type_name or "")
        want_scan = scan is not None and scan.scan == topic
        last_scan = [0.0]

        def on(payload) -> None:
            now = time.monotonic()
            with self._lock:
                tlog.arrivals.append(now)
            if stamped:
                sent = _stamp_ns(payload)
                if sent:
                    ms = (time.time_ns() - sent) / 1e6
                    if abs(ms) >= 60_000 and self.sim_clock is not None:
                        ms = (
                            self.sim_clock * 1e9 - sent
                        ) / 1e6  # stamped in simulated time: compare with /clock
                    if abs(ms) < 60_000:
                        with self._lock:
                            tlog.latency.append((now, ms))
            if want_scan and now - last_scan[0] >= 1.0:  # decode one scan a second, not forty
                last_scan[0] = now
                self._on_scan(bytes(payload), tlog.type_name or "", now)

        return on

    @staticmethod
    def _is_stamped(type_name: str) -> bool:
        from tether.bus import get_type

        try:
            fields = list(getattr(get_type(type_name), "__dataclass_fields__", {}))
        except Exception:
            return False
        return bool(fields) and fields[0] == "header"

    def _on_scan(self, payload: bytes, type_name: str, now: float) -> None:
        from tether.bus.messages import deserialize

        try:
            msg = deserialize(payload, type_name)
            ranges = np.asarray(msg.ranges, dtype=np.float64)
        except Exception:
            return
        scan = self.spec.context.obstacle_density
        valid = np.isfinite(ranges) & (ranges > msg.range_min)
        frac = float(np.mean(ranges[valid] < scan.near_m)) if valid.any() and scan else 0.0
        with self._lock:
            self._scan_near.append((now, frac))

    def _on_clock(self, payload) -> None:
        ns = _stamp_ns(
            payload
        )  # rosgraph_msgs/Clock is one builtin_interfaces/Time: the same bytes as a stamp
        if ns is not None:
            self.sim_clock = ns / 1e9

    def _on_telemetry(self, msg) -> None:
        fqn = f"{msg.namespace.rstrip('/')}/{msg.node}"
        now = time.monotonic()
        metrics = {m.name: float(m.value) for m in msg.metrics}
        changed = None
        with self._lock:
            self._telemetry.setdefault(fqn, collections.deque()).append((now, metrics))
            info = self.nodes.get(fqn)
            if info is not None:
                info.last_seen = now
                if msg.pid and info.pid != msg.pid and self.spec.node_spec(fqn).local:
                    changed = (info.pid, int(msg.pid))
                    info.pid_changes += info.pid is not None
                    info.pid = int(msg.pid)
        if changed is not None:
            for cb in list(self._on_pid_change):
                cb(fqn, changed[0], changed[1])

    def on_pid_change(self, cb: Callable[[str, int | None, int], None]) -> None:
        """`cb(fqn, old_pid, new_pid)` when a node's process is first seen or replaced (a respawn)."""
        self._on_pid_change.append(cb)

    # -- sampling ---------------------------------------------------------------------------------
    def _proc_cpu(self, pid: int) -> float | None:
        try:
            p = self._procs.get(pid)
            if p is None:
                p = self._procs[pid] = psutil.Process(pid)
            total = sum(p.cpu_times()[:2])
            for c in p.children(recursive=True):
                try:
                    total += sum(c.cpu_times()[:2])
                except psutil.Error:
                    pass
            return total
        except psutil.Error:
            self._procs.pop(pid, None)
            return None

    def _sample_loop(self) -> None:
        while not self._stop.wait(self._sample_period):
            try:
                self.sample()
            except Exception:  # the sampler must outlive a bad read
                log.exception("profiler sample failed")

    @staticmethod
    def _running_threads(pid: int) -> int:
        """Threads of a process in state R (running or runnable), from /proc/<pid>/task/*/stat."""
        n = 0
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            return 0
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            if stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] == b"R":
                n += 1
        return n

    def sample(self) -> None:
        now = time.monotonic()
        ct = psutil.cpu_times()
        busy = sum(getattr(ct, f, 0.0) for f in _BUSY_FIELDS)
        own = sum(self._own.cpu_times()[:2])
        rows = []
        stack_running = 0
        for fqn, info in list(self.nodes.items()):
            usage = self.cgroup_usage(fqn)
            if usage is None and info.pid is not None:
                usage = self._proc_cpu(info.pid)
            if usage is not None:
                rows.append((fqn, usage))
            if info.pid is not None:
                stack_running += self._running_threads(info.pid)
        try:
            with open("/proc/stat", "rb") as f:
                running = next(int(line.split()[1]) for line in f if line.startswith(b"procs_running"))
        except (OSError, StopIteration, ValueError):
            running = None
        with self._lock:
            self._host.append((now, busy, own))
            if running is not None:  # minus this sampler, which is running while it reads
                self._runnable.append((now, max(0.0, running - 1 - stack_running)))
            for fqn, usage in rows:
                self._cpu.setdefault(fqn, collections.deque()).append((now, usage))
            self._trim(now)

    def _trim(self, now: float) -> None:
        old = now - HISTORY_S
        for tlog in self._topics.values():
            while tlog.arrivals and tlog.arrivals[0] < old:
                tlog.arrivals.popleft()
            while tlog.latency and tlog.latency[0][0] < old:
                tlog.latency.popleft()
        for dq in (
            *self._telemetry.values(),
            *self._cpu.values(),
            self._host,
            self._scan_near,
            self._runnable,
        ):
            while dq and dq[0][0] < old:
                dq.popleft()

    def reset_cpu(self, fqn: str) -> None:
        """Forget a node's CPU samples (its accounting source changed, e.g. it was placed in a group)."""
        with self._lock:
            self._cpu.pop(fqn, None)

    # -- windows ------------------------------------------------------------------------------------
    def rate(self, topic: str, t0: float, t1: float) -> float | None:
        with self._lock:
            tlog = self._topics.get(topic)
            if tlog is None:
                return None
            arr = np.fromiter(tlog.arrivals, dtype=np.float64)
        inside = arr[(arr > t0) & (arr <= t1)]
        earlier = arr[arr <= t0]
        before = float(earlier[-1]) if earlier.size and t0 - earlier[-1] < 10.0 else None
        return rate_from_arrivals(inside, t0, t1, before)

    def latency_p95(self, topic: str, t0: float, t1: float) -> float | None:
        with self._lock:
            tlog = self._topics.get(topic)
            vals = [ms for t, ms in (tlog.latency if tlog else ()) if t0 < t <= t1]
        return float(np.percentile(vals, 95)) if vals else None

    def metric(self, fqn: str, name: str, t0: float, t1: float) -> float | None:
        """Mean of the node's telemetry values received in the window (each covers the second before it);
        for a short window that a late sample missed, the latest one of the last 2.5 s (1 Hz jitters)."""
        with self._lock:
            series = [(t, m[name]) for t, m in self._telemetry.get(fqn, ()) if t <= t1 + 0.2 and name in m]
        samples = [v for t, v in series if t > t0 + 0.2]
        if not samples and series and series[-1][0] > t1 - 2.5:
            samples = [series[-1][1]]
        return float(np.mean(samples)) if samples else None

    @staticmethod
    def _delta(series, t0: float, t1: float) -> float | None:
        """Rate of change of a cumulative series between the samples nearest t0 and t1."""
        pts = [(t, v) for t, v in series if t0 - 0.5 <= t <= t1 + 0.5]
        if len(pts) < 2:
            return None
        (ta, va), (tb, vb) = pts[0], pts[-1]
        return (vb - va) / (tb - ta) if tb - ta > 0.2 else None

    def node_cpu(self, fqn: str, t0: float, t1: float) -> float | None:
        """The node's CPU in cores over the window."""
        with self._lock:
            series = list(self._cpu.get(fqn, ()))
        d = self._delta(series, t0, t1)
        return None if d is None else max(d, 0.0)

    def stack_cpu(self, t0: float, t1: float) -> float | None:
        vals = [self.node_cpu(f, t0, t1) for f in self.nodes]
        vals = [v for v in vals if v is not None]
        return float(sum(vals)) if vals else None

    def background_load(self, t0: float, t1: float) -> float | None:
        """Runnable tasks outside the spec's nodes (mean over the window): the CPU demand of everything else."""
        with self._lock:
            vals = [v for t, v in self._runnable if t0 < t <= t1]
        return float(np.mean(vals)) if vals else None

    def background_cpu(self, t0: float, t1: float) -> float | None:
        """Busy cores of the host not used by the spec's nodes nor ConfigBot itself."""
        with self._lock:
            host = list(self._host)
        busy = self._delta([(t, b) for t, b, _ in host], t0, t1)
        own = self._delta([(t, o) for t, _, o in host], t0, t1)
        if busy is None:
            return None
        return max(0.0, busy - (self.stack_cpu(t0, t1) or 0.0) - (own or 0.0))

    def obstacle_density(self, t0: float, t1: float) -> float | None:
        with self._lock:
            vals = [f for t, f in self._scan_near if t0 < t <= t1]
        return float(np.median(vals)) if vals else None

    def value(self, s: Signal, t0: float, t1: float) -> float | None:
        if s.kind == "rate":
            return self.rate(s.name, t0, t1)
        if s.kind == "latency":
            return self.latency_p95(s.name, t0, t1)
        if s.name == "cpu.cores":
            return self.stack_cpu(t0, t1) if s.node == STACK else self.node_cpu(s.node or "", t0, t1)
        return self.metric(s.node or "", s.name, t0, t1)

    def measure(self, t0: float, t1: float) -> dict[str, float | None]:
        """Every signal of the specification over (t0, t1] (monotonic seconds), keyed by Signal.key."""
        return {s.key: self.value(s, t0, t1) for s in self.spec.signals()}

    # -- nodes ----------------------------------------------------------------------------------------
    def alive(self, fqn: str, timeout: float) -> bool:
        """Its process runs (when known) and it was heard from within `timeout` s (when it sends telemetry)."""
        info = self.nodes.get(fqn)
        if info is None:
            return False
        if info.pid is not None and not _pid_alive(info.pid):
            return False  # seen at once, not `timeout` later
        if time.monotonic() - info.last_seen <= timeout:
            return True
        return info.pid is not None and info.last_seen == -math.inf

    def set_pid(self, fqn: str, pid: int) -> None:
        """A node's process found another way (its command line), for nodes without tether telemetry."""
        changed = None
        with self._lock:
            info = self.nodes.setdefault(fqn, NodeInfo(fqn))
            if info.pid != pid:
                changed = (info.pid, pid)
                info.pid = pid
        if changed is not None:
            for cb in list(self._on_pid_change):
                cb(fqn, changed[0], changed[1])

    def seen_nodes(self) -> list[str]:
        with self._lock:
            return sorted(self._telemetry)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
