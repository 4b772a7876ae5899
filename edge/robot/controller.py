"""Local control by trajectory sampling: roll out `num_samples` constant-twist arcs, score them, drive the best.

The Dynamic Window Approach (Fox, Burgard and Thrun, IEEE RAM 1997), with samples drawn in the
window of reachable velocities as in Nav2's DWB and MPPI controllers. Scores: progress to a
carrot point on the global plan, distance from the plan, clearance from the latest scan's
obstacles (a local distance field), speed. Cost per call is O(num_samples x steps x plan points).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import distance_transform_edt

from tether.edge.robot.geometry import wrap

__all__ = ["ControllerConfig", "LocalController", "carrot_point"]


@dataclass(frozen=True)
class ControllerConfig:
    num_samples: int = 600
    horizon_s: float = 1.5
    dt: float = 0.1  # s between rollout points
    max_speed: float = 0.8  # m/s
    max_yaw_rate: float = 1.8  # rad/s
    max_accel: float = 2.0  # m/s^2
    max_yaw_accel: float = 4.0  # rad/s^2
    window_s: float = 0.4  # the dynamic window: velocities reachable within this time
    robot_radius: float = 0.22
    safety_margin: float = 0.06
    lookahead_m: float = 1.2
    obstacle_range_m: float = 3.0
    w_carrot: float = 2.0
    w_path: float = 1.5
    w_clearance: float = 0.4
    w_speed: float = 0.3

    def __post_init__(self) -> None:
        if not 8 <= self.num_samples <= 50_000:
            raise ValueError(f"num_samples must satisfy 8 <= n <= 50000, but got {self.num_samples}")


def carrot_point(plan: np.ndarray, x: float, y: float, lookahead: float) -> tuple[np.ndarray, int]:
    """The plan point `lookahead` metres along the plan past the point nearest (x, y), and that nearest index."""
    d = np.hypot(plan[:, 0] - x, plan[:, 1] - y)
    i = int(np.argmin(d))
    seg = np.hypot(*np.diff(plan[i:], axis=0).T) if len(plan) - i > 1 else np.zeros(0)
    along = np.concatenate([[0.0], np.cumsum(seg)])
    j = i + int(np.searchsorted(along, lookahead))
    return plan[min(j, len(plan) - 1)], i


class LocalController:
    def __init__(self, config: ControllerConfig, seed: int = 0) -> None:
        self.config = config
        self.rng = np.random.default_rng(seed)

    def _clearance(self, traj: np.ndarray, obstacles: np.ndarray, x: float, y: float) -> np.ndarray:
        """(S,) smallest distance from each rollout to an obstacle point, through a local distance field:
        obstacles rasterised on a grid around the robot, then one Euclidean distance transform."""
        c = self.config
        res = 0.05
        half = c.obstacle_range_m
        n = int(2 * half / res)
        occ = np.zeros((n, n), dtype=bool)
        if len(obstacles):
            ij = np.floor((obstacles - (x - half, y - half)) / res).astype(np.int64)  # (M, 2) col, row
            keep = (ij >= 0).all(axis=1) & (ij < n).all(axis=1)
            occ[ij[keep, 1], ij[keep, 0]] = True
        if not occ.any():
            return np.full(traj.shape[0], half)
        field = distance_transform_edt(~occ) * res  # (n, n) m
        cols = np.floor((traj[..., 0] - (x - half)) / res).astype(np.int64)  # (S, T)
        rows = np.floor((traj[..., 1] - (y - half)) / res).astype(np.int64)
        inside = (rows >= 0) & (rows < n) & (cols >= 0) & (cols < n)
        d = np.full(traj.shape[:2], half)
        d[inside] = field[rows[inside], cols[inside]]
        return d.min(axis=1)

    def rollout(self, pose: tuple[float, float, float], v: np.ndarray, w: np.ndarray) -> np.ndarray:
        """(S, T, 2) positions of constant-twist arcs from `pose`, for (S,) speeds and yaw rates."""
        c = self.config
        t = np.arange(1, int(round(c.horizon_s / c.dt)) + 1) * c.dt  # (T,)
        x0, y0, th0 = pose
        th = th0 + w[:, None] * t[None, :]  # (S, T)
        straight = np.abs(w) < 1e-3
        wsafe = np.where(straight, 1.0, w)[:, None]
        xs = np.where(
            straight[:, None],
            x0 + v[:, None] * t * math.cos(th0),
            x0 + v[:, None] / wsafe * (np.sin(th) - math.sin(th0)),
        )
        ys = np.where(
            straight[:, None],
            y0 + v[:, None] * t * math.sin(th0),
            y0 - v[:, None] / wsafe * (np.cos(th) - math.cos(th0)),
        )
        return np.stack([xs, ys], axis=-1)

    def compute(
        self,
        pose: tuple[float, float, float],
        velocity: tuple[float, float],
        plan: np.ndarray,
        obstacles: np.ndarray,
    ) -> tuple[float, float, dict]:
        """(v, w) to command now, and diagnostics. `plan` (N, 2) and `obstacles` (M, 2) in the map frame."""
        c = self.config
        x, y, yaw = pose
        if len(plan) == 0:
            return 0.0, 0.0, {"reason": "no plan"}
        carrot, nearest = carrot_point(plan, x, y, c.lookahead_m)
        # Velocity samples inside the dynamic window (plus stop and turn-in-place, always reachable enough).
        v0, w0 = velocity
        dv, dw = c.max_accel * c.window_s, c.max_yaw_accel * c.window_s
        n = c.num_samples
        v_lo, v_hi = np.clip([v0 - dv, v0 + dv], 0.0, c.max_speed)
        w_lo, w_hi = np.clip([w0 - dw, w0 + dw], -c.max_yaw_rate, c.max_yaw_rate)
        v = self.rng.uniform(v_lo, max(v_hi, v_lo), n)
        w = self.rng.uniform(w_lo, max(w_hi, w_lo), n)
        v[:3] = 0.0
        w[:3] = (0.0, c.max_yaw_rate * 0.6, -c.max_yaw_rate * 0.6)
        traj = self.rollout(pose, v, w)  # (S, T, 2)
        clearance = self._clearance(traj, obstacles, x, y)  # (S,) m
        collide = clearance < c.robot_radius + c.safety_margin
        # Path terms: the rollout's end to the carrot; its points to the nearby plan.
        end = traj[:, -1, :]
        to_carrot = np.hypot(end[:, 0] - carrot[0], end[:, 1] - carrot[1])
        local = plan[nearest : nearest + 40]
        dpath = (
            np.sqrt(((traj[:, :, None, :] - local[None, None, :, :]) ** 2).sum(-1)).min(axis=2).mean(axis=1)
        )
        score = (
            c.w_carrot * to_carrot
            + c.w_path * dpath
            + c.w_clearance / np.maximum(clearance - c.robot_radius, 0.05)
            + c.w_speed * (c.max_speed - v)
        )
        score[collide] = np.inf
        best = int(np.argmin(score))
        if not np.isfinite(score[best]):
            # Boxed in: turn towards the carrot on the spot, if that itself collides nothing.
            heading = wrap(math.atan2(carrot[1] - y, carrot[0] - x) - yaw)
            return 0.0, float(np.sign(heading) * c.max_yaw_rate * 0.5), {"reason": "blocked"}
        return float(v[best]), float(w[best]), {"clearance": float(clearance[best]), "reason": "ok"}
