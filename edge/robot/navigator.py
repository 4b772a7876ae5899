"""Navigation without I/O: a goal, the global plan to it, and the local controller that follows the plan.

The navigation node feeds it poses, odometry velocities, scans and goals from the bus and
publishes what `step` returns; a lock-step test does the same by direct calls. Replanning
happens for a new goal, when the robot strays from the plan, and every `replan_period_s`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from tether.edge.gridmap import GridMap
from tether.edge.robot.controller import ControllerConfig, LocalController
from tether.edge.robot.geometry import transform_points
from tether.edge.robot.planner import Costmap, PlannerConfig, plan_path

__all__ = ["Navigator", "NavigatorConfig"]


@dataclass(frozen=True)
class NavigatorConfig:
    planner: PlannerConfig = field(default_factory=PlannerConfig)
    controller: ControllerConfig = field(default_factory=ControllerConfig)
    goal_tolerance_m: float = 0.25
    replan_period_s: float = 5.0
    replan_deviation_m: float = 0.8
    blocked_check_m: float = 2.5  # plan length ahead checked against the scan's obstacles
    blocked_replan_s: float = 1.0  # at most one replan per this when the plan is blocked


class Navigator:
    def __init__(self, grid: GridMap, config: NavigatorConfig | None = None, seed: int = 0) -> None:
        self.config = config or NavigatorConfig()
        self.costmap = Costmap(grid, self.config.planner)
        self.controller = LocalController(self.config.controller, seed=seed)
        self.goal: tuple[float, float] | None = None
        self.pose: tuple[float, float, float] | None = None
        self.velocity = (0.0, 0.0)
        self.obstacles = np.zeros((0, 2))
        self.plan = np.zeros((0, 2))
        self._planned_at = -math.inf
        self._need_plan = False
        self.plans_made = 0
        self.replans: dict[str, int] = {}  # why plans were made: goal, strayed, blocked, period
        self.last_plan_ms = 0.0
        self.last_reason = "idle"

    def set_controller(self, config: ControllerConfig) -> None:
        """New controller parameters (e.g. num_samples) from a parameter change."""
        self.controller.config = config

    def set_goal(self, x: float, y: float) -> None:
        if self.goal != (x, y):
            self.goal = (x, y)
            self._need_plan = True

    def set_pose(self, pose: tuple[float, float, float]) -> None:
        self.pose = pose

    def set_scan(
        self, ranges: np.ndarray, angles: np.ndarray, laser_pose_map: tuple[float, float, float]
    ) -> None:
        """Obstacles from a scan: its finite endpoints, in the map frame, thinned to one per ~5 cm."""
        ok = np.isfinite(ranges)
        pts = np.column_stack([ranges[ok] * np.cos(angles[ok]), ranges[ok] * np.sin(angles[ok])])
        pts = pts[np.hypot(pts[:, 0], pts[:, 1]) < self.config.controller.obstacle_range_m + 0.5]
        if len(pts):
            keys = np.unique(np.round(pts / 0.05).astype(np.int64), axis=0, return_index=True)[1]
            pts = pts[np.sort(keys)]
        self.obstacles = transform_points(laser_pose_map, pts)

    @property
    def at_goal(self) -> bool:
        if self.goal is None or self.pose is None:
            return False
        return (
            math.hypot(self.pose[0] - self.goal[0], self.pose[1] - self.goal[1])
            <= self.config.goal_tolerance_m
        )

    def step(self, now: float) -> tuple[float, float, bool]:
        """(v, w, plan_changed) for time `now` (s)."""
        if self.goal is None or self.pose is None:
            self.last_reason = "no goal" if self.goal is None else "no pose"
            return 0.0, 0.0, False
        if self.at_goal:
            self.last_reason = "at goal"
            return 0.0, 0.0, False
        changed = False
        x, y, _ = self.pose
        strayed = len(self.plan) > 0 and float(np.min(np.hypot(self.plan[:, 0] - x, self.plan[:, 1] - y))) > (
            self.config.replan_deviation_m
        )
        blocked = now - self._planned_at > self.config.blocked_replan_s and self._blocked(x, y)
        reason = (
            "goal"
            if self._need_plan
            else "strayed"
            if strayed
            else "blocked"
            if blocked
            else "period"
            if now - self._planned_at > self.config.replan_period_s
            else None
        )
        if reason is not None:
            t0 = time.perf_counter()
            # Plan on the map plus what the LiDAR sees now: around people, not through them.
            self.plan = plan_path(self.costmap.with_obstacles(self.obstacles), (x, y), self.goal)
            if len(self.plan) == 0:  # boxed in by obstacles: the static map's plan, the controller copes
                self.plan = plan_path(self.costmap, (x, y), self.goal)
            self._planned_at = now
            self._need_plan = False
            self.plans_made += 1
            self.replans[reason] = self.replans.get(reason, 0) + 1
            self.last_plan_ms = (time.perf_counter() - t0) * 1e3
            changed = True
        v, w, info = self.controller.compute(self.pose, self.velocity, self.plan, self.obstacles)
        self.last_reason = info["reason"]
        return v, w, changed

    def _blocked(self, x: float, y: float) -> bool:
        """Whether an obstacle the map does not have (a person) lies on the plan's next `blocked_check_m` m."""
        if len(self.plan) < 2 or len(self.obstacles) == 0:
            return False
        cm = self.costmap
        rows = ((self.obstacles[:, 1] - cm.origin_y) // cm.resolution).astype(np.int64)
        cols = ((self.obstacles[:, 0] - cm.origin_x) // cm.resolution).astype(np.int64)
        h, w = cm.static.shape
        inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
        # A wall seen by the LiDAR lands within a cell or two of the map's wall: not news.
        known = np.zeros(len(rows), dtype=bool)
        known[inside] = cm.dist[rows[inside], cols[inside]] < 2.5 * cm.resolution
        new = self.obstacles[~known]
        if len(new) == 0:
            return False
        i = int(np.argmin(np.hypot(self.plan[:, 0] - x, self.plan[:, 1] - y)))
        ahead = self.plan[i : i + int(self.config.blocked_check_m / 0.1) + 1]  # the plan is 0.1 m spaced
        d = np.hypot(ahead[:, None, 0] - new[None, :, 0], ahead[:, None, 1] - new[None, :, 1])
        return bool(d.min() < self.config.controller.robot_radius + 0.05)
