"""A 2-D LiDAR: horizontal rays cast with MuJoCo's `mj_multiRay` from the robot's LiDAR site.

The rays see the static world (geom group 0) and people (group 1), not the robot itself. A ray
that hits nothing within `range_max` returns +inf (REP 117); hits get Gaussian range noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import mujoco
import numpy as np

from tether.edge.sim.model import ModelIndex

__all__ = ["Lidar", "LidarSpec"]


@dataclass(frozen=True)
class LidarSpec:
    beams: int = 360
    range_min: float = 0.12  # m
    range_max: float = 12.0  # m
    noise_std: float = 0.01  # m
    rate_hz: float = 40.0

    @property
    def angle_min(self) -> float:
        return -math.pi

    @property
    def angle_increment(self) -> float:
        return 2 * math.pi / self.beams


class Lidar:
    """Casts `spec.beams` rays per scan; angles in the robot frame from angle_min, counter-clockwise."""

    def __init__(self, model: mujoco.MjModel, index: ModelIndex, spec: LidarSpec, seed: int = 0) -> None:
        self.model = model
        self.index = index
        self.spec = spec
        self.rng = np.random.default_rng(seed)
        self._angles = spec.angle_min + spec.angle_increment * np.arange(spec.beams)  # (N,) robot frame
        self._vec = np.zeros((spec.beams, 3))
        self._geomid = np.zeros(spec.beams, dtype=np.int32)
        self._dist = np.zeros(spec.beams)
        self._groups = np.array([1, 1, 0, 0, 0, 0], dtype=np.uint8)  # static world and people

    def scan(self, data: mujoco.MjData, yaw: float) -> np.ndarray:
        """(beams,) float32 ranges in metres for the robot's current pose; `data` must be forward-computed."""
        a = self._angles + yaw
        self._vec[:, 0] = np.cos(a)
        self._vec[:, 1] = np.sin(a)
        pnt = data.site_xpos[self.index.lidar_site].copy()
        mujoco.mj_multiRay(
            self.model,
            data,
            pnt,
            self._vec.reshape(-1),
            self._groups,
            1,
            self.index.robot_body,
            self._geomid,
            self._dist,
            None,
            self.spec.beams,
            self.spec.range_max,
        )
        ranges = self._dist.copy()
        hit = (self._geomid >= 0) & (ranges >= 0)
        if self.spec.noise_std > 0:
            ranges[hit] += self.rng.normal(0.0, self.spec.noise_std, int(hit.sum()))
        ranges[~hit | (ranges > self.spec.range_max)] = np.inf
        ranges[hit & (ranges < self.spec.range_min)] = self.spec.range_min
        return ranges.astype(np.float32)
