"""An occupancy grid in numpy, laid out as ROS's nav_msgs/OccupancyGrid.

Row-major, row 0 at the origin's y, cell value 100 = occupied, 0 = free, -1 = unknown (ROS
convention); the origin is the map-frame position of cell (0, 0)'s corner, in metres.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["GridMap"]


@dataclass(frozen=True)
class GridMap:
    """data: (height, width) int8, 100 occupied / 0 free / -1 unknown; resolution in m per cell."""

    data: np.ndarray
    resolution: float
    origin_x: float
    origin_y: float

    @property
    def height(self) -> int:
        return int(self.data.shape[0])

    @property
    def width(self) -> int:
        return int(self.data.shape[1])

    def to_cell(self, x: np.ndarray | float, y: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """(row, col) integer cells of map-frame points; may lie outside the grid."""
        col = np.floor((np.asarray(x) - self.origin_x) / self.resolution).astype(np.int64)
        row = np.floor((np.asarray(y) - self.origin_y) / self.resolution).astype(np.int64)
        return row, col

    def cell_centre(self, row: np.ndarray | int, col: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
        x = self.origin_x + (np.asarray(col) + 0.5) * self.resolution
        y = self.origin_y + (np.asarray(row) + 0.5) * self.resolution
        return x, y

    def occupied(self) -> np.ndarray:
        """(height, width) bool: cells that are occupied."""
        return self.data >= 50
