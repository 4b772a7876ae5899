"""DSLA-Serve on the bus: node /cloud/dsla with the `policy` and `converted_layers` knobs and serving telemetry.

Parameters (ConfigBot tunes them like any other):

- `policy` ("auto" | "manual"): auto = the load policy moves the level; manual = it stays where set.
- `converted_layers` (0 .. the chain's length): reads the current level; setting it moves the
  level there and switches `policy` to "manual" until `policy` is set back to "auto". An
  out-of-range value is rejected with the valid range.
- `chain` (read-only, start-up): the chain folder name under <artefacts>/dsla/chains.
- `http`, `host`, `port` (read-only): the OpenAI-compatible API of the LM runtime
  (cloud/lm/server.py) over this engine; by default at the settings' lm_host:lm_port, where
  the plain LM server would be, so its clients (SpeQL, Patchwork, ...) find DSLA-Serve there.

Telemetry (1 Hz, merged into the node's): `dsla.converted_layers`, `dsla.cache_bytes` (KV +
states + kept inputs), folds, and the engine's `lm.tokens_per_s`, `lm.tpot.p50_ms`, ...
Level changes run on a worker thread (a fold waits for the engine's step), never on the
executor that answers parameter requests.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

from tether.bus import Node
from tether.bus.parameters import Parameter, SetParametersResult
from tether.cloud.dsla.serve import POLICIES, DSLAServe, LevelError
from tether.settings import settings

__all__ = ["DSLANode", "main"]


class DSLANode(Node):
    """The node around a `DSLAServe` (given, or loaded from the `chain` parameter at start-up)."""

    def __init__(self, *, serve: DSLAServe | None = None, **kwargs: Any) -> None:
        super().__init__("dsla", namespace=kwargs.pop("namespace", "/cloud"), **kwargs)
        chain = self.declare_parameter(
            "chain", "", description="Chain folder under <artefacts>/dsla/chains", read_only=True
        ).value
        http = self.declare_parameter("http", True, read_only=True, description="serve the OpenAI API").value
        host = self.declare_parameter("host", settings().lm_host, read_only=True).value
        port = self.declare_parameter("port", settings().lm_port, read_only=True, min=0, max=65535).value
        self.serve = serve if serve is not None else load_serve(chain or None)
        self.declare_parameter(
            "policy",
            "auto",
            choices=list(POLICIES),
            description="auto: the load policy converts and reverts; manual: the level stays",
        )
        self.declare_parameter(
            "converted_layers",
            0,
            min=0,
            max=self.serve.max_level,
            step=1,
            description="Layers on DSLA (a prefix of the chain); setting it switches to manual",
        )
        self._internal = threading.local()  # set while the node itself writes a parameter
        self._work: queue.SimpleQueue = queue.SimpleQueue()
        self._stop = threading.Event()
        self.add_on_set_parameters_callback(self._on_set)
        self.telemetry.add_source(self.serve.snapshot)
        self.serve.engine.start()
        self.http = None
        if http:
            from tether.cloud.lm.server import ServerThread, create_app

            self.http = ServerThread(create_app(self.serve.engine), str(host), int(port)).start()
            self.get_logger().info("DSLA-Serve on %s", self.http.url)
        self._worker = threading.Thread(target=self._apply_loop, name="dsla-apply", daemon=True)
        self._worker.start()
        self._policy = threading.Thread(target=self._policy_loop, name="dsla-policy", daemon=True)
        self._policy.start()

    # --- parameters -----------------------------------------------------------------------------

    def _on_set(self, params: list[Parameter]) -> SetParametersResult:
        if getattr(self._internal, "on", False):
            return SetParametersResult(True)
        for p in params:
            try:
                if p.name == "converted_layers":
                    self.serve.check_level(p.value)
                elif p.name == "policy" and p.value not in POLICIES:
                    raise LevelError(f"policy must be one of {POLICIES}, but got {p.value!r}")
            except LevelError as exc:
                return SetParametersResult(False, str(exc))
        for p in params:
            if p.name == "converted_layers":
                self.serve.set_policy("manual")  # at once, so the next policy tick leaves the level alone
                self._work.put(("level", p.value))
            elif p.name == "policy":
                self.serve.set_policy(p.value)
        return SetParametersResult(True)

    def _write(self, name: str, value: Any) -> None:
        """Publish a value the node changed itself (no callback effects)."""
        self._internal.on = True
        try:
            self.set_parameters([Parameter(name, value)])
        finally:
            self._internal.on = False

    def _apply_loop(self) -> None:
        while not self._stop.is_set():
            try:
                item = self._work.get(timeout=0.2)
            except queue.Empty:
                continue
            if item is None:
                return
            _, level = item
            try:
                # The parameter reads "manual" before the level moves, so a reader that sees the
                # new level also sees the policy it implies.
                self._write("policy", "manual")
                self.serve.set_converted_layers(level)
            except Exception:
                self.get_logger().exception("setting converted_layers=%s failed", level)
            self._write("converted_layers", self.serve.level)

    def _policy_loop(self) -> None:
        while not self._stop.wait(self.serve.policy_cfg.interval_s):
            try:
                before = self.serve.level
                after = self.serve.tick()
            except Exception:
                self.get_logger().exception("policy tick failed")
                continue
            if after != before:
                self.get_logger().info("policy: %d -> %d converted layers", before, after)
                self._write("converted_layers", after)

    def close(self) -> None:
        """Stop the HTTP server, the threads and the engine (every request ends, every block returns)."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._work.put(None)
        if self.http is not None:
            self.http.stop()
            self.http = None
        for t in (self._worker, self._policy):
            t.join(timeout=10)
        self.serve.engine.stop()

    def destroy_node(self) -> None:
        self.close()
        super().destroy_node()


def load_serve(chain: str | None = None) -> DSLAServe:
    """The embedded model (or the `lm_model` setting) with its distilled chain (default: the GPU-distilled
    one where it exists), converting in the chain's serving order, ready to serve."""
    from tether.cloud.dsla.chain import Chain
    from tether.cloud.dsla.cli import chains_root, default_chain_name, preferred_chain
    from tether.cloud.lm.checkpoint import load_checkpoint
    from tether.cloud.lm.config import CacheConfig, EngineConfig
    from tether.cloud.lm.engine import LLMEngine
    from tether.cloud.lm.model import Transformer

    ckpt = load_checkpoint()
    model = Transformer.from_checkpoint(ckpt)
    ch = Chain.open(chains_root() / (chain or preferred_chain(default_chain_name(ckpt.name, 2))))
    ch.check_teacher(ckpt.name)
    order = ch.load_into(model, activate=False)
    config = EngineConfig(cache=CacheConfig(kv_cache_bytes=4 << 30, side_cache_bytes=1 << 30))
    return DSLAServe(LLMEngine(model, ckpt.tokenizer, config, name=ckpt.name), order, ch.kind)


def main(args: list[str] | None = None) -> None:
    """The `tether_dsla.serve` node executable (`--ros-args -p chain:=<name> -p port:=8001`)."""
    from tether.bus import run_node

    raise SystemExit(run_node(DSLANode, args))
