"""Serving metrics of an engine: tokens/s, queue length, TTFT and TPOT percentiles, KV blocks; Prometheus too.

TTFT (time to first token) runs from a request's arrival to its first output token;
TPOT (time per output token) is a finished request's mean gap between output tokens
after the first. Percentiles are over a sliding window of recent requests, tokens/s
over the last `rate_window_s` seconds. `snapshot()` gives the bus names
(`lm.ttft.p99_ms`, ...); `registry` holds the same as Prometheus collectors.
Thread-safe: the engine thread records, any thread reads.
"""

from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["EngineMetrics"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class EngineMetrics:
    def __init__(self, window: int = 512, rate_window_s: float = 10.0) -> None:
        self._lock = threading.Lock()
        self._ttft: deque[float] = deque(maxlen=window)  # seconds
        self._tpot: deque[float] = deque(maxlen=window)
        self._tokens: deque[tuple[float, int]] = deque()  # (time, output tokens of a step)
        self.rate_window_s = rate_window_s
        self.queue_len = 0
        self.running = 0
        self.kv_blocks_used = 0
        self.kv_blocks_total = 0
        self.registry = CollectorRegistry()
        r = self.registry
        self.p_ttft = Histogram(
            "lm_time_to_first_token_seconds", "Arrival to first token", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.p_tpot = Histogram(
            "lm_time_per_output_token_seconds",
            "Mean gap between output tokens",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.p_prompt = Counter("lm_prompt_tokens", "Prompt tokens processed", registry=r)
        self.p_generated = Counter("lm_generation_tokens", "Output tokens generated", registry=r)
        self.p_requests = Counter("lm_requests_finished", "Requests ended, by reason", ["reason"], registry=r)
        self.p_rejected = Counter("lm_requests_rejected", "Requests refused (queue full)", registry=r)
        self.p_queue = Gauge("lm_queue_length", "Requests waiting", registry=r)
        self.p_running = Gauge("lm_running_requests", "Requests with a cache", registry=r)
        self.p_kv = Gauge("lm_kv_blocks_used", "KV blocks held by running requests", registry=r)
        self.p_kv_total = Gauge("lm_kv_blocks_total", "KV blocks in the pool", registry=r)

    def record_step(
        self,
        output_tokens: int,
        prompt_tokens: int,
        queue_len: int,
        running: int,
        kv_used: int,
        kv_total: int,
    ) -> None:
        now = time.perf_counter()
        with self._lock:
            if output_tokens:
                self._tokens.append((now, output_tokens))
            while self._tokens and self._tokens[0][0] < now - self.rate_window_s:
                self._tokens.popleft()
            self.queue_len, self.running = queue_len, running
            self.kv_blocks_used, self.kv_blocks_total = kv_used, kv_total
        self.p_generated.inc(output_tokens)
        self.p_prompt.inc(prompt_tokens)
        self.p_queue.set(queue_len)
        self.p_running.set(running)
        self.p_kv.set(kv_used)
        self.p_kv_total.set(kv_total)

    def record_first_token(self, ttft_s: float) -> None:
        with self._lock:
            self._ttft.append(ttft_s)
        self.p_ttft.observe(ttft_s)

    def record_finish(self, reason: str, tpot_s: float | None) -> None:
        if tpot_s is not None:
            with self._lock:
                self._tpot.append(tpot_s)
            self.p_tpot.observe(tpot_s)
        self.p_requests.labels(reason=reason).inc()

    def record_rejected(self) -> None:
        self.p_rejected.inc()

    def tokens_per_s(self) -> float:
        now = time.perf_counter()
        with self._lock:
            recent = [(t, n) for t, n in self._tokens if t >= now - self.rate_window_s]
        if not recent:
            return 0.0
        return sum(n for _, n in recent) / max(now - recent[0][0], 1.0)

    def snapshot(self) -> dict[str, float]:
        """The bus telemetry: names `lm.*`, latencies in milliseconds (NaN-free: 0 when no data)."""
        with self._lock:
            ttft = np.array(self._ttft) * 1e3
            tpot = np.array(self._tpot) * 1e3
            out = {
                "lm.queue_len": float(self.queue_len),
                "lm.running": float(self.running),
                "lm.kv_blocks_used": float(self.kv_blocks_used),
                "lm.kv_blocks_total": float(self.kv_blocks_total),
            }
        out["lm.tokens_per_s"] = self.tokens_per_s()
        for name, arr in (("ttft", ttft), ("tpot", tpot)):
            for q in (50, 99):
                out[f"lm.{name}.p{q}_ms"] = float(np.percentile(arr, q)) if arr.size else 0.0
        return out
