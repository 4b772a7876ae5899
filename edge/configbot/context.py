"""The context fingerprint: which situation the robot is in, as far as its best configuration is concerned.

ConfigBot (arXiv 2501.10513) keeps context-specific configurations and reuses them when a
context returns; the fingerprint here is a few binned signals: background load (host cores
runnable tasks outside the specification's nodes), obstacle density (the share of LiDAR beams closer than
a distance), the power mode (nvpmodel's, or the stack's emulated CPU quota), and any signal the
specification bins. Measured signals are noisy: a value must pass a bin edge by `hysteresis`
(a fraction of the edge) to leave the current bin, and a new fingerprint counts only once it
has held for `stable_s` seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tether.edge.configbot.spec import Spec

__all__ = ["Context", "ContextTracker", "bin_index", "bin_label"]

_NAMES = {1: ("low", "high"), 2: ("low", "mid", "high")}


def bin_index(value: float, bins: list[float], current: int | None = None, band: float = 0.0) -> int:
    """The bin a value falls in; with `current`, a value within `band` (a fraction of the edge) beyond the
    edge next to the current bin stays in it (hysteresis: noise around an edge does not flip the context)."""
    i = int(np.searchsorted(np.asarray(bins), value, side="right"))
    if current is None or i == current or band <= 0:
        return i
    if i > current and value < bins[i - 1] * (1 + band):
        return i - 1 if i - 1 > current else current
    if i < current and value > bins[i] * (1 - band):
        return i + 1 if i + 1 < current else current
    return i


def bin_label(value: float, bins: list[float], current: str | None = None, band: float = 0.0) -> str:
    """The bin a value falls in: low/high for one edge, low/mid/high for two, b0..bn otherwise."""
    names = _NAMES.get(len(bins)) or tuple(f"b{k}" for k in range(len(bins) + 1))
    cur = names.index(current) if current in names else None
    return names[bin_index(value, bins, cur, band)]


@dataclass(frozen=True)
class Context:
    parts: tuple[tuple[str, str], ...]

    @property
    def fingerprint(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.parts) or "default"

    def __str__(self) -> str:
        return self.fingerprint


class ContextTracker:
    """Turns windows of measurements into a stable context. `power_mode()` names the current mode (or None)."""

    def __init__(self, spec: Spec, profiler, power_mode: Callable[[], str | None] = lambda: None) -> None:
        self.spec = spec
        self.profiler = profiler
        self.power_mode = power_mode
        self.current: Context | None = None
        self._candidate: Context | None = None
        self._since = 0.0

    def observe(self, t0: float, t1: float) -> Context:
        """The context over (t0, t1]; a value near a bin edge keeps the current context's bin (`hysteresis`)."""
        cs = self.spec.context
        cur = dict(self.current.parts) if self.current is not None else {}
        band = cs.hysteresis
        parts: list[tuple[str, str]] = []
        if cs.load_bins is not None:
            load = self.profiler.background_load(t0, t1)
            parts.append(
                ("load", "?" if load is None else bin_label(load, cs.load_bins, cur.get("load"), band))
            )
        if cs.obstacle_density is not None:
            dens = self.profiler.obstacle_density(t0, t1)
            label = (
                "?" if dens is None else bin_label(dens, cs.obstacle_density.bins, cur.get("obstacles"), band)
            )
            parts.append(("obstacles", label))
        if cs.power_mode:
            mode = self.power_mode()
            if mode is not None:
                parts.append(("power", mode))
        for name, sig in sorted(cs.signals.items()):
            v = self.profiler.value(sig.signal(self.spec.namespace), t0, t1)
            parts.append((name, "?" if v is None else bin_label(v, sig.bins, cur.get(name), band)))
        return Context(tuple(parts))

    def update(self, now: float) -> tuple[Context, bool]:
        """(the stable context, whether it just changed). A fingerprint with an unknown part never counts."""
        seen = self.observe(now - self.spec.context.window_s, now)
        if any(v == "?" for _, v in seen.parts):
            return (self.current or seen), False
        if self.current is None:
            self.current = seen
            return seen, False
        if seen == self.current:
            self._candidate = None
            return self.current, False
        if seen != self._candidate:
            self._candidate, self._since = seen, now
        if now - self._since >= self.spec.context.stable_s:
            self.current, self._candidate = seen, None
            return seen, True
        return self.current, False
