"""The shared LM on the bus: a node that runs the engine and its HTTP server, telemetry out, knobs in.

Telemetry (1 Hz on `<ns>/lm/telemetry`, besides every node's own metrics):
    lm.tokens_per_s        output tokens per second over the last 10 s
    lm.queue_len           requests waiting for admission
    lm.running             requests with a cache (prefilling or decoding)
    lm.ttft.p50_ms / p99_ms   time to first token over recent requests
    lm.tpot.p50_ms / p99_ms   time per output token (per request, mean after the first)
    lm.kv_blocks_used / lm.kv_blocks_total   KV blocks held by running requests / in the pool
Parameters (settable over the bus; ConfigBot tunes them): `max_batch_size` and
`max_tokens_per_step` apply from the engine's next step. Read-only: `http` (serve the
OpenAI API too), `host`, `port` (default: the settings' lm_host/lm_port), `model` (empty:
the settings' lm_model, else the embedded SmolLM2), `threads`, `prefix_caching`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tether.bus import Node, Parameter, SetParametersResult
from tether.cloud.lm.config import CacheConfig, ConfigError, EngineConfig, SchedulerConfig
from tether.cloud.lm.engine import LLMEngine
from tether.settings import settings

__all__ = ["LMNode", "main"]

_KNOBS = ("max_batch_size", "max_tokens_per_step")


class LMNode(Node):
    """Runs an engine (its own, or `engine` given: then the caller owns the model, the node the loop)."""

    def __init__(self, *, engine: LLMEngine | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("namespace", "/cloud")
        super().__init__("lm", **kwargs)
        base = engine.limits if engine is not None else SchedulerConfig()
        mbs = self.declare_parameter(
            "max_batch_size",
            base.max_batch_size,
            min=1,
            max=256,
            description="sequences per engine step (decode and prefill together)",
        )
        mtps = self.declare_parameter(
            "max_tokens_per_step",
            base.max_tokens_per_step,
            min=1,
            max=8192,
            description="tokens per engine step: decode tokens plus prompt chunks",
        )
        http = self.declare_parameter("http", True, read_only=True, description="serve the OpenAI API").value
        host = self.declare_parameter("host", settings().lm_host, read_only=True).value
        port = self.declare_parameter("port", settings().lm_port, read_only=True, min=0, max=65535).value
        model = self.declare_parameter(
            "model", "", read_only=True, description="checkpoint; empty = default"
        ).value
        threads = self.declare_parameter("threads", 2, read_only=True, min=1, max=256).value
        prefix = self.declare_parameter("prefix_caching", True, read_only=True).value
        if engine is None:
            config = EngineConfig(
                cache=CacheConfig(prefix_caching=bool(prefix)),
                scheduler=SchedulerConfig(max_batch_size=int(mbs.value), max_tokens_per_step=int(mtps.value)),
                threads=int(threads),
            )
            engine = LLMEngine.load(model or None, config)
        else:
            engine.set_limits(max_batch_size=int(mbs.value), max_tokens_per_step=int(mtps.value))
        self.engine = engine.start()
        self.http = None
        if http:
            from tether.cloud.lm.server import ServerThread, create_app

            self.http = ServerThread(create_app(engine), str(host), int(port)).start()
            self.get_logger().info("serving %s on %s", engine.name, self.http.url)
        self.add_on_set_parameters_callback(self._on_set)
        self.telemetry.add_source(self.engine.metrics.snapshot)

    def _on_set(self, params: Sequence[Parameter]) -> SetParametersResult:
        knobs = {p.name: int(p.value) for p in params if p.name in _KNOBS}
        if not knobs:
            return SetParametersResult(successful=True)
        merged = {k: knobs.get(k, getattr(self.engine.limits, k)) for k in _KNOBS}
        try:
            self.engine.set_limits(**merged)
        except ConfigError as err:
            return SetParametersResult(successful=False, reason=str(err))
        return SetParametersResult(successful=True)

    def close(self) -> None:
        """Stop the HTTP server, then the engine (every request ends, every block returns)."""
        if self.http is not None:
            self.http.stop()
            self.http = None
        self.engine.stop()


def main(args: list[str] | None = None) -> None:
    """The `tether_lm.server` node executable (`--ros-args -p max_batch_size:=4 -p port:=8001`)."""
    from tether.bus import run_node

    raise SystemExit(run_node(LMNode, args))
