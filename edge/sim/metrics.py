"""Task metrics of a run, measured on the ground truth: collisions, goals, path length, time, plan tracking.

Tracking error is the distance from the robot's true position to the plan it is following (the
navigation node's latest `plan`, a polyline in the map frame): how far the robot strays from
what it meant to do. A starved controller reacts late and strays further.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import asdict, dataclass, field

import numpy as np

__all__ = ["RunMetrics", "distance_to_polyline"]


def distance_to_polyline(x: float, y: float, path: np.ndarray) -> float:
    """Distance (m) from (x, y) to a polyline given as (N, 2) points; inf for an empty path."""
    if path.shape[0] == 0:
        return math.inf
    if path.shape[0] == 1:
        return float(np.hypot(x - path[0, 0], y - path[0, 1]))
    a, b = path[:-1], path[1:]  # (N-1, 2) segment ends
    ab = b - a
    ap = np.array([x, y]) - a
    denom = np.maximum((ab * ab).sum(axis=1), 1e-12)
    t = np.clip((ap * ab).sum(axis=1) / denom, 0.0, 1.0)
    closest = a + t[:, None] * ab
    return float(np.min(np.hypot(closest[:, 0] - x, closest[:, 1] - y)))


@dataclass
class RunMetrics:
    """Accumulated over a run; `summary()` is what the report and telemetry show."""

    collisions: int = 0  # onsets of contact with walls or furniture
    person_contacts: int = 0  # onsets of contact with a person
    goals_reached: int = 0
    goals_total: int = 0
    path_length_m: float = 0.0
    sim_time_s: float = 0.0
    wall_time_s: float = 0.0
    goal_times_s: list[float] = field(default_factory=list)
    cmd_vel_received: int = 0
    tracking_samples: int = 0
    tracking_sum_m: float = 0.0
    tracking_max_m: float = 0.0
    collision_log: list = field(default_factory=list)  # (t, x, y, "wall"|"person"), the first 50
    _recent: deque = field(default_factory=lambda: deque(maxlen=100))
    _last_touch: dict = field(default_factory=dict)  # geom -> last time it touched the robot

    def contacts(
        self, t: float, x: float, y: float, static_now: set[int], people_now: set[int], gap_s: float = 1.0
    ) -> None:
        """Count collisions: a geom touching the robot that had not touched it for `gap_s` seconds (a
        robot scraping along a wall, touching on and off, is one collision, not one per touch)."""
        for kind, now in (("wall", static_now), ("person", people_now)):
            for g in now:
                if t - self._last_touch.get(g, -math.inf) > gap_s:
                    if kind == "wall":
                        self.collisions += 1
                    else:
                        self.person_contacts += 1
                    if len(self.collision_log) < 50:
                        self.collision_log.append((round(t, 2), round(x, 2), round(y, 2), kind))
                self._last_touch[g] = t

    def moved(self, dist: float) -> None:
        self.path_length_m += dist

    def track(self, error_m: float) -> None:
        if math.isfinite(error_m):
            self.tracking_samples += 1
            self.tracking_sum_m += error_m
            self.tracking_max_m = max(self.tracking_max_m, error_m)
            self._recent.append(error_m)

    @property
    def tracking_mean_m(self) -> float:
        return self.tracking_sum_m / self.tracking_samples if self.tracking_samples else 0.0

    @property
    def tracking_recent_m(self) -> float:
        return float(np.mean(self._recent)) if self._recent else 0.0

    @property
    def rtf(self) -> float:
        return self.sim_time_s / self.wall_time_s if self.wall_time_s > 0 else 0.0

    def summary(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if not k.startswith("_")}
        out.pop("tracking_sum_m")
        out["tracking_mean_m"] = self.tracking_mean_m
        out["rtf"] = self.rtf
        out["cmd_vel_rate_hz"] = self.cmd_vel_received / self.sim_time_s if self.sim_time_s > 0 else 0.0
        return out
