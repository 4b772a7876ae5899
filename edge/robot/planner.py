"""Global planning: a costmap inflated around obstacles, A* on it, and a line-of-sight shortcut of the result.

Hart, Nilsson and Raphael, "A Formal Basis for the Heuristic Determination of Minimum Cost
Paths" (1968); the inflation layer is Nav2's (lethal inside the robot's radius, then a cost
decaying with distance, so paths keep off walls where there is room).
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import distance_transform_edt

from tether.edge.gridmap import GridMap

__all__ = ["Costmap", "PlannerConfig", "plan_path"]


@dataclass(frozen=True)
class PlannerConfig:
    resolution: float = 0.1  # m per planning cell (the map is max-pooled to it)
    robot_radius: float = 0.22  # m
    inflation_radius: float = 0.8  # m, where the cost reaches zero
    cost_scale: float = 4.0  # steepness of the cost decay
    cost_weight: float = 3.0  # how much a unit of cost weighs against a metre of path


class Costmap:
    """cost (H, W) float32 in [0, 1] outside obstacles, inf where the robot's centre cannot be."""

    def __init__(self, grid: GridMap, config: PlannerConfig) -> None:
        self.config = config
        k = max(1, round(config.resolution / grid.resolution))
        h, w = grid.height // k, grid.width // k
        occ = grid.occupied() | (grid.data < 0)
        occ = occ[: h * k, : w * k].reshape(h, k, w, k).any(axis=(1, 3))  # (h, w) max-pooled
        self.resolution = grid.resolution * k
        self.origin_x, self.origin_y = grid.origin_x, grid.origin_y
        self.static = occ
        self._inflate(occ)

    def _inflate(self, occ: np.ndarray) -> None:
        config = self.config
        dist = distance_transform_edt(~occ) * self.resolution  # (h, w) m to the nearest obstacle
        cost = np.exp(-config.cost_scale * np.maximum(dist - config.robot_radius, 0.0))
        cost[dist > config.inflation_radius] = 0.0
        cost[dist <= config.robot_radius + 0.02] = np.inf
        self.dist = dist
        self.cost = cost.astype(np.float32)

    def with_obstacles(self, points: np.ndarray) -> Costmap:
        """A copy with map-frame `points` (e.g. people seen by the LiDAR) as obstacles too: Nav2's
        obstacle layer, so a plan goes around someone standing in a corridor."""
        out = object.__new__(Costmap)
        out.config, out.resolution = self.config, self.resolution
        out.origin_x, out.origin_y = self.origin_x, self.origin_y
        out.static = self.static
        occ = self.static.copy()
        if len(points):
            rows = ((points[:, 1] - self.origin_y) // self.resolution).astype(np.int64)
            cols = ((points[:, 0] - self.origin_x) // self.resolution).astype(np.int64)
            ok = (rows >= 0) & (rows < occ.shape[0]) & (cols >= 0) & (cols < occ.shape[1])
            occ[rows[ok], cols[ok]] = True
        out._inflate(occ)
        return out

    @property
    def shape(self) -> tuple[int, int]:
        return self.cost.shape

    def to_cell(self, x: float, y: float) -> tuple[int, int]:
        return int((y - self.origin_y) // self.resolution), int((x - self.origin_x) // self.resolution)

    def to_xy(self, row: int, col: int) -> tuple[float, float]:
        return self.origin_x + (col + 0.5) * self.resolution, self.origin_y + (row + 0.5) * self.resolution

    def free(self, row: int, col: int) -> bool:
        h, w = self.shape
        return 0 <= row < h and 0 <= col < w and math.isfinite(self.cost[row, col])

    def nearest_free(self, row: int, col: int, radius: int = 10) -> tuple[int, int] | None:
        """The closest traversable cell within `radius` cells (a goal or start inside the inflation)."""
        best, best_d = None, math.inf
        for dr in range(-radius, radius + 1):
            for dc in range(-radius, radius + 1):
                if self.free(row + dr, col + dc) and dr * dr + dc * dc < best_d:
                    best, best_d = (row + dr, col + dc), dr * dr + dc * dc
        return best


_MOVES = [(-1, 0, 1.0), (1, 0, 1.0), (0, -1, 1.0), (0, 1, 1.0)] + [
    (dr, dc, math.sqrt(2)) for dr in (-1, 1) for dc in (-1, 1)
]


def _line_free(cm: Costmap, a: tuple[int, int], b: tuple[int, int], max_cost: float) -> bool:
    n = max(abs(b[0] - a[0]), abs(b[1] - a[1])) * 2 + 1
    rows = np.rint(np.linspace(a[0], b[0], n)).astype(int)
    cols = np.rint(np.linspace(a[1], b[1], n)).astype(int)
    c = cm.cost[rows, cols]
    return bool(np.all(np.isfinite(c)) and np.all(c <= max_cost))


def plan_path(
    cm: Costmap, start: tuple[float, float], goal: tuple[float, float], spacing: float = 0.1
) -> np.ndarray:
    """(N, 2) map-frame points from start to goal, densified to `spacing`; empty when there is no path."""
    s = cm.to_cell(*start)
    g = cm.to_cell(*goal)
    if not cm.free(*s):
        s = cm.nearest_free(*s) or s
    if not cm.free(*g):
        g = cm.nearest_free(*g)
        if g is None:
            return np.zeros((0, 2))
    weight = cm.config.cost_weight
    h, w = cm.shape
    best = np.full((h, w), np.inf)
    parent = np.full((h, w, 2), -1, dtype=np.int32)
    best[s] = 0.0
    heap = [(0.0, 0.0, s)]
    cost = cm.cost
    while heap:
        _, gcost, cur = heapq.heappop(heap)
        if cur == g:
            break
        if gcost > best[cur]:
            continue
        r, c = cur
        for dr, dc, step in _MOVES:
            nr, nc = r + dr, c + dc
            if not (0 <= nr < h and 0 <= nc < w):
                continue
            cc = cost[nr, nc]
            if cc == np.inf:
                continue
            ng = gcost + step * (1.0 + weight * cc)
            if ng < best[nr, nc]:
                best[nr, nc] = ng
                parent[nr, nc] = (r, c)
                heapq.heappush(heap, (ng + math.hypot(g[0] - nr, g[1] - nc), ng, (nr, nc)))
    if not math.isfinite(best[g]):
        return np.zeros((0, 2))
    cells = [g]
    while cells[-1] != s:
        pr, pc = parent[cells[-1]]
        cells.append((int(pr), int(pc)))
    cells.reverse()
    # Shortcut: from each kept cell jump to the farthest cell still in low-cost line of sight.
    kept = [cells[0]]
    i = 0
    while i < len(cells) - 1:
        j = len(cells) - 1
        while j > i + 1 and not _line_free(cm, cells[i], cells[j], max_cost=0.35):
            j -= 1
        kept.append(cells[j])
        i = j
    pts = np.array([cm.to_xy(r, c) for r, c in kept])
    pts[0] = start
    pts[-1] = goal if cm.free(*cm.to_cell(*goal)) else pts[-1]
    out = [pts[0]]
    for a, b in zip(pts[:-1], pts[1:]):
        n = max(1, int(math.ceil(np.hypot(*(b - a)) / spacing)))
        out.extend(a + (b - a) * (k / n) for k in range(1, n + 1))
    return np.array(out)
