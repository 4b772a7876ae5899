"""Every node's telemetry: published at 1 Hz on `<ns>/<node>/telemetry` as `tether_msgs/Telemetry`.

Metric names (dotted; `<topic>` is the name as the node declared it, slashes as dots):

| name                               | unit | meaning                                                      |
|------------------------------------|------|--------------------------------------------------------------|
| `rate.<topic>`                     | Hz   | messages this node published on the topic                   |
| `rate.recv.<topic>`                | Hz   | messages delivered to this node's callback (after rate caps) |
| `latency.callback.p50_ms/p95/p99`  | ms   | time inside this node's callbacks (all of them)              |
| `latency.e2e.<topic>.p50_ms/p95/p99` | ms | receive time minus `header.stamp`, where messages carry one |
|                                    |      | (above ~1,000 msgs/s, of a systematic sample: `LatencyWindow`) |
| `cpu.percent`                      | %    | process CPU, 100 = one core                                  |
| `mem.rss_mb`                       | MiB  | resident memory                                              |
| `msgs.dropped`                     | 1    | lost in transport (sequence gaps) or to a full queue (total) |
| `msgs.malformed`                   | 1    | payloads that did not decode as the topic's type (total)     |
| `msgs.oversized`                   | 1    | payloads above TETHER_MAX_MESSAGE_BYTES (total)              |
| `msgs.rate_capped`                 | 1    | messages withheld by a `rate_cap.<topic>` parameter (total)  |
| `msgs.shm` / `msgs.shm_fallback`   | 1    | large payloads this process put through its shared-memory    |
|                                    |      | pool / sent as bytes because the pool was full (totals, per  |
|                                    |      | process; only where the Zenoh transport has a pool)          |
| `executor.queue`                   | 1    | work items waiting in the node's executor                    |

A service adds its own metrics with `node.telemetry.add_source(fn)` or `node.telemetry.set(name, value)`
(e.g. `lm.ttft.p99_ms`), so a ConfigBot constraint can name any `<node>:<metric>`.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable

import numpy as np
import psutil

__all__ = ["Counter", "LatencyWindow", "TelemetryCollector"]


class Counter:
    """A monotonically increasing count; rates are deltas between telemetry ticks."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def inc(self, n: int = 1) -> None:
        self.value += n


class LatencyWindow:
    """Recent samples in milliseconds (bounded); percentiles per telemetry window.

    A per-message measurement asks `due()` first. Up to about SAMPLES_PER_S events a second every event
    is measured; above that every `stride`-th, the stride set at each sample from the rate since the one
    before (at most MAX_STRIDE, so a topic whose rate drops waits at most that many events for its next
    sample, and is then measured at every event again). A busy topic pays for a sample, not for every
    message; the samples spread over the whole telemetry window instead of being its last `maxlen`
    events; and a systematic sample of a topic's messages leaves its percentiles unbiased.
    """

    SAMPLES_PER_S = 1000
    MAX_STRIDE = 32

    def __init__(self, maxlen: int = 4096, clock: Callable[[], float] = time.monotonic) -> None:
        self._samples: collections.deque[float] = collections.deque(maxlen=maxlen)
        self.stride = 1
        self._countdown = 1
        self._clock = clock
        self._last = clock()  # when the last sample was due

    def due(self) -> bool:
        """Whether this event is one to measure (call once per event; races only shift a sample)."""
        self._countdown -= 1
        if self._countdown > 0:
            return False
        now = self._clock()
        rate = self.stride / max(now - self._last, 1e-9)  # events a second since the last sample
        self._last = now
        self.stride = min(max(int(rate / self.SAMPLES_PER_S), 1), self.MAX_STRIDE)
        self._countdown = self.stride
        return True

    def add(self, ms: float) -> None:
        self._samples.append(ms)

    def take(self) -> np.ndarray:
        out = np.fromiter(self._samples, dtype=np.float64, count=len(self._samples))
        self._samples.clear()
        return out


class TelemetryCollector:
    """Gathers a node's counters and samples and turns them into metrics once per period."""

    def __init__(self) -> None:
        self.pub_counts: dict[str, Counter] = {}
        self.recv_counts: dict[str, Counter] = {}
        self.callback_latency = LatencyWindow()
        self.e2e_latency: dict[str, LatencyWindow] = {}
        self.dropped = Counter()
        self.malformed = Counter()
        self.oversized = Counter()
        self.rate_capped = Counter()
        self._sources: list[Callable[[], dict[str, float]]] = []
        self._gauges: dict[str, float] = {}
        self._last_counts: dict[str, int] = {}
        self._last_time = time.monotonic()
        self._proc = psutil.Process()
        self._proc.cpu_percent(None)
        self._lock = threading.Lock()
        self.queue_length: Callable[[], int] = lambda: 0

    def add_source(self, fn: Callable[[], dict[str, float]]) -> None:
        """`fn()` returns extra metrics each tick (called on the telemetry thread; keep it cheap)."""
        self._sources.append(fn)

    def set(self, name: str, value: float) -> None:
        """Set a gauge reported at every tick until changed."""
        self._gauges[name] = float(value)

    def snapshot(self) -> tuple[dict[str, float], float]:
        """Metrics over the window since the last snapshot, and the window's length in seconds."""
        with self._lock:
            now = time.monotonic()
            window = max(now - self._last_time, 1e-6)
            self._last_time = now
            out: dict[str, float] = {}
            for prefix, counts in (("rate.", self.pub_counts), ("rate.recv.", self.recv_counts)):
                for topic, c in list(counts.items()):
                    key = prefix + topic
                    out[key] = (c.value - self._last_counts.get(key, 0)) / window
                    self._last_counts[key] = c.value
            lat = self.callback_latency.take()
            if lat.size:
                p50, p95, p99 = np.percentile(lat, [50, 95, 99])
                out.update({"latency.callback.p50_ms": p50, "latency.callback.p95_ms": p95})
                out["latency.callback.p99_ms"] = p99
            for topic, w in list(self.e2e_latency.items()):
                s = w.take()
                if s.size:
                    p50, p95, p99 = np.percentile(s, [50, 95, 99])
                    out[f"latency.e2e.{topic}.p50_ms"] = p50
                    out[f"latency.e2e.{topic}.p95_ms"] = p95
                    out[f"latency.e2e.{topic}.p99_ms"] = p99
            try:
                out["cpu.percent"] = self._proc.cpu_percent(None)
                out["mem.rss_mb"] = self._proc.memory_info().rss / 2**20
            except psutil.Error:
                pass
            out["msgs.dropped"] = self.dropped.value
            out["msgs.malformed"] = self.malformed.value
            out["msgs.oversized"] = self.oversized.value
            out["msgs.rate_capped"] = self.rate_capped.value
            out["executor.queue"] = self.queue_length()
            out.update(self._gauges)
            for fn in self._sources:
                try:
                    out.update({k: float(v) for k, v in fn().items()})
                except Exception as exc:  # a broken source must not stop telemetry
                    out["telemetry.source_errors"] = out.get("telemetry.source_errors", 0) + 1
                    self._gauges.setdefault("telemetry.last_error", 0.0)
                    del exc
            return out, window
