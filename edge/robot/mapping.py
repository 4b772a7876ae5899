"""Occupancy grid mapping with known poses: log-odds updates along each beam (Moravec and Elfes, 1985;
Probabilistic Robotics ch. 9). The robot's non-core load: a live map for the operator's view.

Cost per scan is O(beams x range / resolution): a finer `resolution` costs quadratically more
memory and linearly more per beam.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tether.edge.gridmap import GridMap

__all__ = ["MappingConfig", "OccupancyMapper"]


@dataclass(frozen=True)
class MappingConfig:
    resolution: float = 0.05  # m per cell
    size_m: tuple[float, float] = (22.0, 14.0)
    origin: tuple[float, float] = (-1.0, -1.0)
    range_max: float = 8.0
    l_occ: float = 0.85  # log-odds added where a beam ends
    l_free: float = -0.4  # log-odds added along the beam
    l_clamp: float = 5.0

    def __post_init__(self) -> None:
        if not 0.01 <= self.resolution <= 1.0:
            raise ValueError(f"resolution must satisfy 0.01 <= r <= 1.0 m, but got {self.resolution}")


class OccupancyMapper:
    def __init__(self, config: MappingConfig) -> None:
        self.config = config
        self.w = int(config.size_m[0] / config.resolution)
        self.h = int(config.size_m[1] / config.resolution)
        self.logodds = np.zeros((self.h, self.w), dtype=np.float32)
        self.updates = 0

    def update(self, pose: tuple[float, float, float], ranges: np.ndarray, angles: np.ndarray) -> None:
        """Integrate one scan taken at `pose` (map frame)."""
        c = self.config
        x, y, yaw = pose
        r = np.where(np.isfinite(ranges), ranges, c.range_max).astype(np.float64)
        hit = np.isfinite(ranges) & (ranges < c.range_max)
        r = np.minimum(r, c.range_max)
        steps = np.arange(0.0, c.range_max, c.resolution * 0.7)  # (K,) sample distances along a beam
        a = angles + yaw
        along = steps[None, :] < (r - c.resolution)[:, None]  # (B, K) samples before the end cell
        px = x + steps[None, :] * np.cos(a)[:, None]  # (B, K)
        py = y + steps[None, :] * np.sin(a)[:, None]
        self._add(px[along], py[along], c.l_free)
        self._add(x + r[hit] * np.cos(a[hit]), y + r[hit] * np.sin(a[hit]), c.l_occ - c.l_free)
        np.clip(self.logodds, -c.l_clamp, c.l_clamp, out=self.logodds)
        self.updates += 1

    def _add(self, px: np.ndarray, py: np.ndarray, value: float) -> None:
        c = self.config
        col = ((px - c.origin[0]) / c.resolution).astype(np.int64)
        row = ((py - c.origin[1]) / c.resolution).astype(np.int64)
        ok = (row >= 0) & (row < self.h) & (col >= 0) & (col < self.w)
        cells = np.unique(row[ok] * self.w + col[ok])  # each cell once per scan
        self.logodds.reshape(-1)[cells] += value

    def grid(self) -> GridMap:
        """The map as occupancy (0-100, -1 unknown)."""
        p = 1.0 / (1.0 + np.exp(-self.logodds))
        data = np.where(self.logodds == 0, -1, np.rint(p * 100)).astype(np.int8)
        return GridMap(
            data=data,
            resolution=self.config.resolution,
            origin_x=self.config.origin[0],
            origin_y=self.config.origin[1],
        )
