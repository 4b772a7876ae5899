"""The static map as an occupancy grid, rasterised from the world's boxes (the simulator's `map` topic)."""

from __future__ import annotations

import numpy as np

from tether.edge.gridmap import GridMap
from tether.edge.sim.world import World

__all__ = ["GridMap", "rasterise"]


def rasterise(
    world: World, resolution: float = 0.05, margin: float = 0.5, min_height: float = 0.05
) -> GridMap:
    """Mark every cell whose centre lies in a box (grown by half a cell, so 0.1 m walls stay closed)."""
    if not 0.005 <= resolution <= 1.0:
        raise ValueError(f"map resolution must satisfy 0.005 <= r <= 1.0 m per cell, but got {resolution}")
    ox, oy = -margin, -margin
    width = int(np.ceil((world.size[0] + 2 * margin) / resolution))
    height = int(np.ceil((world.size[1] + 2 * margin) / resolution))
    xs = ox + (np.arange(width) + 0.5) * resolution  # (W,) cell-centre x
    ys = oy + (np.arange(height) + 0.5) * resolution  # (H,) cell-centre y
    grid = np.zeros((height, width), dtype=np.int8)
    half = resolution / 2
    for b in world.boxes:
        if b.height < min_height:
            continue
        cols = np.nonzero(np.abs(xs - b.cx) <= b.hx + half)[0]
        rows = np.nonzero(np.abs(ys - b.cy) <= b.hy + half)[0]
        if cols.size and rows.size:
            grid[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] = 100
    # Outside the outer walls is unknown, as a real map would have it.
    outside = (
        (xs[None, :] < 0) | (xs[None, :] > world.size[0]) | (ys[:, None] < 0) | (ys[:, None] > world.size[1])
    )
    grid[outside & (grid == 0)] = -1
    return GridMap(data=grid, resolution=resolution, origin_x=ox, origin_y=oy)
