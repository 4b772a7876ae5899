"""Timers: a callback every `period` seconds, run by the node's executor."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tether.bus.node import Node

__all__ = ["Timer"]


class Timer:
    """Created by `Node.create_timer`. A late timer fires once and re-aligns (no burst of catch-up calls)."""

    def __init__(self, node: Node, period: float, callback: Callable[[], None]) -> None:
        if not period > 0:
            raise ValueError(f"a timer period > 0 s must hold, but got {period!r}")
        self.node = node
        self.timer_period_ns = int(period * 1e9)
        self._period = period
        self._callback = callback
        self._canceled = False
        self._next = time.monotonic() + period

    def _fire(self, now: float) -> None:
        self._next += self._period
        if self._next < now:
            self._next = now + self._period
        self.node._run_callback(self._callback, ())

    def cancel(self) -> None:
        self._canceled = True

    def reset(self) -> None:
        self._canceled = False
        self._next = time.monotonic() + self._period

    def is_canceled(self) -> bool:
        return self._canceled

    def destroy(self) -> None:
        self.cancel()
        self.node.executor.remove_timer(self)
