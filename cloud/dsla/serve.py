"""DSLA-Serve: the LM engine with layers converted and reverted online, sequences in flight folded, not dropped.

Both weight sets stay resident (each layer's slot holds its softmax and its DSLA kind), so
a swap is a change of the slot's active kind (arXiv 2506.09316). The level is the number of
layers converted, always a prefix of the distilled chain's order. Converting layer l:

- new sequences use DSLA at l (the slot's active kind);
- every sequence in flight is converted too: its K/V at l is **folded** into the DSLA state
  (S = sum_s exp(b_T - b_s) k_s v_s^T; the gates need each token's layer input x_s, which
  sequences keep as side tensors at the next `lookahead` layers of the order), so it goes on
  decoding with no recomputation. The reference drops that cache instead. A sequence that
  started before its inputs were kept stays on softmax at l (counted as a fold failure).

Reverting layer l changes what new sequences get; a sequence in flight keeps its DSLA state
(going back would need the K/V it no longer has). The level follows the load policy
(`policy` = "auto") or a manual setting (`set_converted_layers`, which switches to
"manual" until `set_policy("auto")`), so ConfigBot can trade quality for speed without
fighting the load policy.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tether.cloud.dsla.policy import ConversionPolicy, Load, PolicyConfig
from tether.cloud.lm.engine import LLMEngine

__all__ = ["DSLAServe", "LevelError", "POLICIES"]

POLICIES = ("auto", "manual")


class LevelError(ValueError):
    """A requested conversion level or policy is outside what is valid; the message gives the range."""


@dataclass
class FoldStats:
    folded: int = 0  # sequences in flight whose K/V was folded into a state
    failed: int = 0  # sequences in flight that kept softmax (no kept inputs)
    seconds: float = 0.0  # time spent folding, in the engine thread


class DSLAServe:
    """Owns the conversion level of an engine whose model has a DSLA kind on the chain's layers.

    `order`: the distilled layers in serving order (`Chain.serving_order`; level n converts
    order[:n]); `kind`: the slots' DSLA kind name. Thread-safe: every change runs in the engine
    thread (`engine.call`).
    """

    def __init__(
        self,
        engine: LLMEngine,
        order: Sequence[int],
        kind: str = "dsla",
        *,
        policy: PolicyConfig | None = None,
        lookahead: int = 2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.order = list(order)
        self.kind = kind
        n_layer = engine.model.config.n_layer
        for layer in self.order:
            engine.model.slots[layer].impl(kind)  # raises KeyError naming the layer when missing
        self.policy_cfg = policy or PolicyConfig()
        self.policy = ConversionPolicy(self.policy_cfg, n_layer, len(self.order))
        self.lookahead = lookahead
        self.clock = clock
        self.level = 0
        self.mode = "auto"
        self.folds = FoldStats()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._keep_inputs()

    @property
    def max_level(self) -> int:
        return len(self.order)

    # --- knobs ----------------------------------------------------------------------------------

    def set_policy(self, mode: str) -> None:
        if mode not in POLICIES:
            raise LevelError(f"policy must be one of {POLICIES}, but got {mode!r}")
        self.mode = mode

    def check_level(self, n: int) -> int:
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= self.max_level:
            raise LevelError(
                f"converted_layers must be an integer in [0, {self.max_level}] (the distilled chain has "
                f"{self.max_level} layers), but got {n!r}"
            )
        return n

    def set_converted_layers(self, n: int) -> None:
        """Go to level n now and switch the policy to manual (until `set_policy("auto")`)."""
        self.check_level(n)
        self.mode = "manual"
        self.policy.changed(self.clock())
        self.set_level(n)

    def set_level(self, n: int, timeout: float | None = 120.0, *, auto: bool = False) -> None:
        """Convert or revert one layer at a time until `n` layers are converted (blocking). With
        `auto` (a policy decision), nothing happens once a manual setting has taken over."""
        self.check_level(n)
        with self._lock:
            if auto and self.mode != "auto":
                return
            while self.level < n:
                self.engine.call(self._convert_next).result(timeout)
            while self.level > n:
                self.engine.call(self._revert_last).result(timeout)

    # --- engine thread ----------------------------------------------------------------------------

    def _convert_next(self, engine: LLMEngine) -> None:
        layer = self.order[self.level]
        engine.model.slots[layer].active = self.kind
        t0 = time.perf_counter()
        for seq in list(engine.cache.seqs.values()):
            try:
                engine.cache.convert_layer(seq, layer, self.kind)
                self.folds.folded += 1
            except NotImplementedError:
                self.folds.failed += 1
        self.folds.seconds += time.perf_counter() - t0
        self.level += 1
        self._keep_inputs()

    def _revert_last(self, engine: LLMEngine) -> None:
        self.level -= 1
        engine.model.slots[self.order[self.level]].active = "softmax"
        self._keep_inputs()

    def _keep_inputs(self) -> None:
        """New sequences keep their layer inputs at the next `lookahead` layers of the order only."""
        nxt = set(self.order[self.level : self.level + self.lookahead])
        for slot in self.engine.model.slots:
            slot.keep_inputs = slot.layer in nxt

    # --- the policy -------------------------------------------------------------------------------

    def load(self, timeout: float = 30.0) -> Load:
        """The engine's load, read in its thread."""

        def read(engine: LLMEngine) -> Load:
            sched = engine.scheduler
            reqs = list(getattr(sched, "waiting", [])) + list(getattr(sched, "running", []))
            usage = engine.cache.usage()
            return Load(
                queue_len=sched.num_waiting,
                max_context=max((r.num_tokens for r in reqs), default=0),
                memory=usage.kv_blocks_used / max(usage.kv_blocks_total, 1),
            )

        return self.engine.call(read).result(timeout)

    def tick(self, load: Load | None = None) -> int:
        """One policy decision (auto mode only); returns the level after it."""
        if self.mode != "auto":
            return self.level
        load = load or self.load()
        target = self.policy.decide(load, self.level, self.clock())
        if target != self.level:
            self.set_level(target, auto=True)
        return self.level

    def start(self) -> DSLAServe:
        """Run `tick` every `interval_s` in a background thread (the engine must be running)."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="dsla-policy", daemon=True)
            self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.policy_cfg.interval_s):
            self.tick()

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None

    # --- telemetry --------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, float]:
        """The bus telemetry: `dsla.*` (level, folds, cache bytes) plus the engine's `lm.*`."""
        usage = self.engine.cache.usage()
        side = usage.side_blocks_used * self.engine.cache.side_pool.block_bytes
        out = {
            "dsla.converted_layers": float(self.level),
            "dsla.policy_auto": 1.0 if self.mode == "auto" else 0.0,
            "dsla.folded": float(self.folds.folded),
            "dsla.fold_failures": float(self.folds.failed),
            "dsla.fold_ms_total": self.folds.seconds * 1e3,
            "dsla.kv_bytes": float(usage.kv_bytes_used),
            "dsla.state_bytes": float(usage.state_bytes),
            "dsla.side_bytes": float(side),
            "dsla.cache_bytes": float(usage.kv_bytes_used + usage.state_bytes + side),
        }
        out.update(self.engine.metrics.snapshot())
        return out
