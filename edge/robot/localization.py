"""Monte Carlo localization: a particle filter over (x, y, yaw) with a likelihood-field LiDAR model.

Thrun, Burgard and Fox, Probabilistic Robotics (2005), ch. 8 (MCL with the odometry motion
model) and ch. 6.4 (likelihood field); ROS's AMCL is the same filter. Cost per update is
O(num_particles x beams): the knob `num_particles` trades accuracy and robustness for CPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import distance_transform_edt

from tether.edge.gridmap import GridMap
from tether.edge.robot.geometry import compose, invert, wrap

__all__ = ["LikelihoodField", "ParticleFilter", "ParticleFilterConfig"]


@dataclass(frozen=True)
class ParticleFilterConfig:
    num_particles: int = 1000
    beams: int = 60  # beams of each scan used by the sensor model
    sigma_hit: float = 0.2  # m, std of a return around the nearest obstacle
    z_hit: float = 0.9  # weight of the hit model; the rest is uniform noise
    alpha: tuple[float, float, float, float] = (0.2, 0.2, 0.2, 0.2)  # odometry motion noise (Thrun's a1..a4)
    resample_threshold: float = 0.5  # resample when N_eff < threshold x N
    range_max: float = 10.0

    def __post_init__(self) -> None:
        if not 10 <= self.num_particles <= 100_000:
            raise ValueError(f"num_particles must satisfy 10 <= n <= 100000, but got {self.num_particles}")
        if not 4 <= self.beams <= 2000:
            raise ValueError(f"beams must satisfy 4 <= beams <= 2000, but got {self.beams}")


class LikelihoodField:
    """Per cell: the distance (m) to the nearest occupied cell, capped; unknown cells count as far."""

    def __init__(self, grid: GridMap, max_dist: float = 2.0) -> None:
        self.grid = grid
        occ = grid.occupied()
        dist = distance_transform_edt(~occ) * grid.resolution  # (H, W) m
        self.dist = np.minimum(dist, max_dist).astype(np.float32)
        self.max_dist = max_dist

    def lookup(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Distances at map-frame points (any shape); max_dist outside the map."""
        row, col = self.grid.to_cell(x, y)
        inside = (row >= 0) & (row < self.grid.height) & (col >= 0) & (col < self.grid.width)
        out = np.full(np.shape(x), self.max_dist, dtype=np.float32)
        out[inside] = self.dist[row[inside], col[inside]]
        return out


class ParticleFilter:
    """Particles (N, 3) of (x, y, yaw) in the map frame, with log-free normalised weights (N,)."""

    def __init__(self, field: LikelihoodField, config: ParticleFilterConfig, seed: int = 0) -> None:
        self.field = field
        self.config = config
        self.rng = np.random.default_rng(seed)
        self.particles = np.zeros((config.num_particles, 3))
        self.weights = np.full(config.num_particles, 1.0 / config.num_particles)
        self._last_odom: tuple[float, float, float] | None = None
        self.updates = 0

    def initialise(
        self, pose: tuple[float, float, float], std: tuple[float, float, float] = (0.2, 0.2, 0.1)
    ) -> None:
        n = self.config.num_particles
        self.particles = np.column_stack(
            [
                self.rng.normal(pose[0], std[0], n),
                self.rng.normal(pose[1], std[1], n),
                self.rng.normal(pose[2], std[2], n),
            ]
        )
        self.weights = np.full(n, 1.0 / n)

    def resize(self, num_particles: int) -> None:
        """Change the particle count (a parameter change) by resampling from the current belief."""
        cfg = ParticleFilterConfig(**{**self.config.__dict__, "num_particles": num_particles})
        idx = self.rng.choice(len(self.particles), size=num_particles, p=self.weights)
        self.particles = self.particles[idx].copy()
        self.weights = np.full(num_particles, 1.0 / num_particles)
        self.config = cfg

    def predict(self, odom: tuple[float, float, float]) -> None:
        """Move the particles by the odometry change since the last call (Thrun's sample_motion_model_odometry)."""
        if self._last_odom is None:
            self._last_odom = odom
            return
        dx, dy, dth = compose(invert(self._last_odom), odom)  # the motion in the robot's previous frame
        self._last_odom = odom
        trans = math.hypot(dx, dy)
        rot1 = math.atan2(dy, dx) if trans > 1e-3 else 0.0
        if trans > 1e-3 and abs(wrap(rot1)) > math.pi / 2:  # driving backwards
            rot1 = float(wrap(rot1 + math.pi))
            trans = -trans
        rot2 = float(wrap(dth - rot1))
        a1, a2, a3, a4 = self.config.alpha
        n = len(self.particles)
        r1 = rot1 + self.rng.normal(0, math.sqrt(a1 * rot1**2 + a2 * trans**2) + 1e-6, n)
        tr = trans + self.rng.normal(0, math.sqrt(a3 * trans**2 + a4 * (rot1**2 + rot2**2)) + 1e-6, n)
        r2 = rot2 + self.rng.normal(0, math.sqrt(a1 * rot2**2 + a2 * trans**2) + 1e-6, n)
        th = self.particles[:, 2]
        self.particles[:, 0] += tr * np.cos(th + r1)
        self.particles[:, 1] += tr * np.sin(th + r1)
        self.particles[:, 2] = wrap(th + r1 + r2)

    def update(
        self, ranges: np.ndarray, angles: np.ndarray, laser_pose: tuple[float, float, float] = (0, 0, 0)
    ) -> None:
        """Weight particles by how well the scan's endpoints land on obstacles; resample when degenerate."""
        cfg = self.config
        ok = np.isfinite(ranges) & (ranges < cfg.range_max)
        idx = np.nonzero(ok)[0]
        if idx.size < 5:
            return
        pick = idx[np.linspace(0, idx.size - 1, min(cfg.beams, idx.size)).astype(int)]
        r = ranges[pick].astype(np.float64)  # (B,)
        a = angles[pick] + laser_pose[2]
        lx = laser_pose[0] + r * np.cos(a)  # (B,) endpoints in the robot frame
        ly = laser_pose[1] + r * np.sin(a)
        p = self.particles
        c, s = np.cos(p[:, 2])[:, None], np.sin(p[:, 2])[:, None]  # (N, 1)
        ex = p[:, 0:1] + c * lx[None, :] - s * ly[None, :]  # (N, B) endpoints in the map frame
        ey = p[:, 1:2] + s * lx[None, :] + c * ly[None, :]
        d = self.field.lookup(ex, ey)  # (N, B) distance to the nearest obstacle
        z_rand = (1.0 - cfg.z_hit) / cfg.range_max
        like = cfg.z_hit * np.exp(-0.5 * (d / cfg.sigma_hit) ** 2) + z_rand  # (N, B)
        # Sum of logs, tempered by the beam count (beams are not independent; AMCL uses a cube).
        logw = np.log(like).sum(axis=1) * (30.0 / len(r))
        logw += np.log(self.weights + 1e-300)
        logw -= logw.max()
        w = np.exp(logw)
        self.weights = w / w.sum()
        self.updates += 1
        if 1.0 / np.sum(self.weights**2) < cfg.resample_threshold * len(w):
            self._resample()

    def _resample(self) -> None:
        """Low-variance (systematic) resampling, plus a little jitter to keep diversity."""
        n = len(self.weights)
        positions = (self.rng.random() + np.arange(n)) / n
        idx = np.minimum(np.searchsorted(np.cumsum(self.weights), positions), n - 1)
        self.particles = self.particles[idx]
        self.particles[:, :2] += self.rng.normal(0, 0.01, (n, 2))
        self.particles[:, 2] = wrap(self.particles[:, 2] + self.rng.normal(0, 0.005, n))
        self.weights = np.full(n, 1.0 / n)

    def estimate(self) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
        """((x, y, yaw) weighted mean, (var_x, var_y, var_yaw))."""
        w, p = self.weights, self.particles
        x, y = float(w @ p[:, 0]), float(w @ p[:, 1])
        yaw = math.atan2(float(w @ np.sin(p[:, 2])), float(w @ np.cos(p[:, 2])))
        var = (
            float(w @ (p[:, 0] - x) ** 2),
            float(w @ (p[:, 1] - y) ** 2),
            float(w @ wrap(p[:, 2] - yaw) ** 2),
        )
        return (x, y, yaw), var
