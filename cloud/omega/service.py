"""OMEGA (arXiv 2501.08547) on the bus: a node that serves GNN requests and lets ConfigBot tune the
recompute budget, OMEGA's latency/accuracy knob.

The node serves batches of new nodes in a background thread. Its request source replays the
graph's held-out batches at `request_rate_hz` (a deployment's front end would feed the same
queue); since held-out nodes carry labels, accuracy is measured on live traffic.

Telemetry (1 Hz on `<ns>/omega/telemetry`, besides every node's own metrics):
    omega.latency.p50_ms, omega.latency.p99_ms   request latency over the last `window` requests
    omega.accuracy                               share of new nodes classified right, same window
    omega.recompute_budget                       the budget in force
    omega.recomputed_share                       recomputed / changed neighbours, last request
    omega.edges                                  edges aggregated by the last request
    omega.requests                               requests served since start
Parameters: `recompute_budget` (0..1, share of changed neighbours recomputed, highest score
first), `method` (exact | sampled | precomputed | omega), `request_rate_hz`; read-only: `graph`,
`model`, `root` (a bundle folder; default: the artefacts folder's omega/<graph>), `threads`.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tether.bus import Node, Parameter, SetParametersResult
from tether.cloud.omega.plan import METHOD_NAMES, Method, method_from_name

__all__ = ["OmegaNode", "main"]


class OmegaNode(Node):
    """Serves requests in a thread; `recompute_budget` and `method` apply from the next request. `close()` stops it."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("namespace", "/cloud")
        super().__init__("omega", **kwargs)
        import torch

        from tether.cloud.omega.bundle import Bundle, default_root

        budget = self.declare_parameter(
            "recompute_budget",
            0.3,
            description="share of the queries' changed neighbours recomputed, highest d_new/(d_new+d_org) first",
            min=0.0,
            max=1.0,
        ).value
        method = self.declare_parameter(
            "method", "omega", description="serving method", choices=list(METHOD_NAMES)
        ).value
        rate = self.declare_parameter(
            "request_rate_hz", 2.0, description="requests served per second", min=0.01, max=1000.0
        ).value
        self._window = int(self.declare_parameter("window", 50, min=1, max=100_000, read_only=True).value)
        graph = self.declare_parameter("graph", "bench", read_only=True).value
        model = self.declare_parameter("model", "sage3", read_only=True).value
        root = self.declare_parameter(
            "root", "", description="bundle folder (empty: artefacts)", read_only=True
        ).value
        threads = int(self.declare_parameter("threads", 1, min=1, max=256, read_only=True).value)
        torch.set_num_threads(threads)

        bundle = Bundle(Path(root) if root else default_root(graph))
        self.server = bundle.server(model)
        self.split = bundle.load_split()
        self._state_lock = threading.Lock()
        self._method: Method = method_from_name(method, budget=float(budget))
        self._budget = float(budget)
        self._period = 1.0 / float(rate)
        self._latency: deque[float] = deque(maxlen=self._window)
        self._correct: deque[tuple[int, int]] = deque(maxlen=self._window)
        self._served = 0
        self._last = None
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self.add_on_set_parameters_callback(self._on_set)
        self.telemetry.add_source(self._metrics)
        self._thread = threading.Thread(target=self._serve, name="omega-serve", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        r = 0
        try:
            while not self._stop.is_set():
                t0 = time.perf_counter()
                req = self.split.request(r % self.split.num_requests)
                with self._state_lock:
                    method = self._method
                out = self.server.infer(req, method)
                ms = (time.perf_counter() - t0) * 1e3
                right = int((out.argmax(1) == req.labels).sum())
                with self._state_lock:
                    self._latency.append(ms)
                    self._correct.append((right, req.size))
                    self._served += 1
                    self._last = self.server.last
                r += 1
                self._stop.wait(max(0.0, self._period - (time.perf_counter() - t0)))
        except BaseException as err:  # reported in the log and kept for callers
            self.error = err
            self.get_logger().exception("OMEGA serving failed")

    def _metrics(self) -> dict[str, float]:
        with self._state_lock:
            if not self._latency:
                return {"omega.requests": 0.0, "omega.recompute_budget": self._budget}
            lat = sorted(self._latency)
            right = sum(c for c, _ in self._correct)
            total = sum(n for _, n in self._correct)
            last = self._last
            p99 = lat[min(len(lat) - 1, int(round(0.99 * (len(lat) - 1))))]
            return {
                "omega.latency.p50_ms": statistics.median(lat),
                "omega.latency.p99_ms": p99,
                "omega.accuracy": right / total,
                "omega.recompute_budget": self._budget,
                "omega.recomputed_share": last.recomputed / last.candidates if last.candidates else 0.0,
                "omega.edges": float(last.edges),
                "omega.requests": float(self._served),
            }

    def _on_set(self, params: Sequence[Parameter]) -> SetParametersResult:
        values = {p.name: p.value for p in params}
        budget = float(values.get("recompute_budget", self._budget))
        with self._state_lock:
            name = values.get("method", self._method.name)
            try:
                method = method_from_name(name, budget=budget)
            except ValueError as err:
                return SetParametersResult(successful=False, reason=str(err))
            self._method, self._budget = method, budget
            if "request_rate_hz" in values:
                self._period = 1.0 / float(values["request_rate_hz"])
            # a changed knob starts a fresh window, so telemetry reflects the new setting only
            if {"recompute_budget", "method"} & values.keys():
                self._latency.clear()
                self._correct.clear()
        return SetParametersResult(successful=True)

    def close(self) -> None:
        """Stop serving (the thread finishes its current request)."""
        self._stop.set()
        self._thread.join(timeout=60)


def main(args: list[str] | None = None) -> None:
    """The `omega.server` node executable (ROS 2 arguments: `--ros-args -p recompute_budget:=0.2 ...`)."""
    from tether.bus import run_node

    raise SystemExit(run_node(OmegaNode, args))
