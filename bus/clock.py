"""Time and clocks as rclpy has them: system (wall) time, or simulated time from `/clock` with use_sim_time."""

from __future__ import annotations

import threading
import time as _time
from dataclasses import dataclass

from tether.bus.messages import get_type

__all__ = ["Clock", "Duration", "Time"]


@dataclass(frozen=True, order=True)
class Time:
    """A point in time in integer nanoseconds (since the epoch, or since the simulation start)."""

    nanoseconds: int = 0

    @classmethod
    def from_msg(cls, msg) -> Time:
        return cls(int(msg.sec) * 1_000_000_000 + int(msg.nanosec))

    def to_msg(self):
        TimeMsg = get_type("builtin_interfaces/msg/Time")
        sec, nsec = divmod(self.nanoseconds, 1_000_000_000)
        return TimeMsg(sec=int(sec), nanosec=int(nsec))

    def seconds_nanoseconds(self) -> tuple[int, int]:
        return divmod(self.nanoseconds, 1_000_000_000)

    @property
    def seconds(self) -> float:
        return self.nanoseconds / 1e9

    def __sub__(self, other: Time) -> Duration:
        return Duration(self.nanoseconds - other.nanoseconds)


@dataclass(frozen=True, order=True)
class Duration:
    nanoseconds: int = 0

    @property
    def seconds(self) -> float:
        return self.nanoseconds / 1e9


class Clock:
    """`now()` is wall time, or the last `/clock` message when the node's use_sim_time is true."""

    def __init__(self, use_sim_time: bool = False) -> None:
        self.use_sim_time = use_sim_time
        self._sim_ns = 0
        self._cond = threading.Condition()

    def now(self) -> Time:
        if self.use_sim_time:
            return Time(self._sim_ns)
        return Time(_time.time_ns())

    def now_ns(self) -> int:
        """`now()` as integer nanoseconds, without building a Time (the per-message path uses it)."""
        return self._sim_ns if self.use_sim_time else _time.time_ns()

    def _on_clock(self, msg) -> None:
        with self._cond:
            self._sim_ns = int(msg.clock.sec) * 1_000_000_000 + int(msg.clock.nanosec)
            self._cond.notify_all()

    def sleep_for(self, seconds: float) -> None:
        """Sleep in this clock's time (simulated time advances only with `/clock`)."""
        if not self.use_sim_time:
            _time.sleep(seconds)
            return
        target = self._sim_ns + int(seconds * 1e9)
        with self._cond:
            while self._sim_ns < target:
                if not self._cond.wait(timeout=1.0):
                    break
