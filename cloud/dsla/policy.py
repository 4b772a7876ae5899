"""The load-driven conversion policy of DSLA-Serve: convert one more layer under load, revert one when it drops.

The reference (arXiv 2506.09316) checks every 5 s, with a 60 s cooldown between swaps:
convert when the longest queued prompt reaches 1024 tokens or 50 requests queue, up to
75% of the layers; revert when prompts fall below ~819 tokens and the queue below 25. Here
the longest context counts running sequences too (their decode cost grows with it), and
KV memory pressure is a third signal. The gap between the convert and the revert
thresholds is the hysteresis; the cooldown keeps one burst from swinging several layers.
Pure logic: the caller passes the load and the time.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ConversionPolicy", "Load", "PolicyConfig"]


@dataclass(frozen=True)
class PolicyConfig:
    """Thresholds (convert at or above, revert below), the cadence and the ceiling."""

    interval_s: float = 5.0  # how often the policy looks at the load
    cooldown_s: float = 60.0  # at least this long between two changes
    convert_context: int = 1024  # tokens: the longest queued or running context that counts as load
    revert_context: int = 819
    convert_queue: int = 50  # waiting requests
    revert_queue: int = 25
    convert_memory: float = 0.8  # fraction of the KV pool in use
    revert_memory: float = 0.5
    max_fraction: float = 0.75  # of the model's layers (further capped by the distilled chain)

    def __post_init__(self) -> None:
        def check(name: str, lo: float, hi: float) -> None:
            value = getattr(self, name)
            if not lo <= value <= hi:
                raise ValueError(f"PolicyConfig.{name} must satisfy {lo} <= {name} <= {hi}, but got {value}")

        check("interval_s", 0.0, 3600.0)
        check("cooldown_s", 0.0, 86400.0)
        check("convert_context", 1, 1 << 24)
        check("revert_context", 0, 1 << 24)
        check("convert_queue", 1, 1 << 24)
        check("revert_queue", 0, 1 << 24)
        check("convert_memory", 0.0, 1.0)
        check("revert_memory", 0.0, 1.0)
        check("max_fraction", 0.0, 1.0)
        for what in ("context", "queue", "memory"):
            hi, lo = getattr(self, f"convert_{what}"), getattr(self, f"revert_{what}")
            if lo > hi:
                raise ValueError(
                    f"PolicyConfig: revert_{what} <= convert_{what} must hold (hysteresis), but got "
                    f"revert_{what}={lo} > convert_{what}={hi}; lower revert_{what}"
                )


@dataclass(frozen=True)
class Load:
    """What the policy sees at a tick."""

    queue_len: int  # requests waiting
    max_context: int  # longest context (prompt + output) among waiting and running requests, tokens
    memory: float  # fraction of the KV pool in use

    def high(self, cfg: PolicyConfig) -> bool:
        return (
            self.max_context >= cfg.convert_context
            or self.queue_len >= cfg.convert_queue
            or self.memory >= cfg.convert_memory
        )

    def low(self, cfg: PolicyConfig) -> bool:
        return (
            self.max_context < cfg.revert_context
            and self.queue_len < cfg.revert_queue
            and self.memory < cfg.revert_memory
        )


class ConversionPolicy:
    """Decides the number of converted layers from the load; one layer per change, then a cooldown."""

    def __init__(self, cfg: PolicyConfig, n_layer: int, available: int) -> None:
        self.cfg = cfg
        # The ceiling: max_fraction of the model, and never past the distilled chain.
        self.ceiling = min(int(cfg.max_fraction * n_layer), available)
        self.last_change: float | None = None

    def cooling(self, now: float) -> bool:
        return self.last_change is not None and now - self.last_change < self.cfg.cooldown_s

    def decide(self, load: Load, current: int, now: float) -> int:
        """The level to go to (current, current + 1 or current - 1)."""
        if self.cooling(now):
            return current
        if load.high(self.cfg) and current < self.ceiling:
            target = current + 1
        elif load.low(self.cfg) and current > 0:
            target = current - 1
        else:
            return current
        self.last_change = now
        return target

    def changed(self, now: float) -> None:
        """A change made outside the policy (a manual set) also starts the cooldown."""
        self.last_change = now
