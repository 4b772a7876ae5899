"""The indoor world: walls, furniture and the roadmap people walk on, loaded from `worlds/<name>.yaml`.

Everything static is an axis-aligned box in the map frame (metres); the MuJoCo model, the
occupancy map and the LiDAR test all derive from the same boxes, so they cannot disagree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tether.edge.yamlconfig import load_model

__all__ = ["Box", "World", "WorldError", "load_world", "world_path", "WORLDS_DIR"]

WORLDS_DIR = Path(__file__).resolve().parent / "worlds"


class WorldError(ValueError):
    """A world breaks a rule (unknown name, roadmap through a wall). Not recoverable: fix the file."""


@dataclass(frozen=True)
class Box:
    """A static axis-aligned box: centre (cx, cy), half extents (hx, hy), height from the floor (m)."""

    cx: float
    cy: float
    hx: float
    hy: float
    height: float
    kind: str  # "wall" | "obstacle"

    def contains(self, x: float, y: float, margin: float = 0.0) -> bool:
        return abs(x - self.cx) <= self.hx + margin and abs(y - self.cy) <= self.hy + margin

    def segment_hits(self, x0: float, y0: float, x1: float, y1: float, margin: float = 0.0) -> bool:
        """Whether the segment passes within `margin` of the box (slab test on the grown box)."""
        lo = (self.cx - self.hx - margin, self.cy - self.hy - margin)
        hi = (self.cx + self.hx + margin, self.cy + self.hy + margin)
        t0, t1 = 0.0, 1.0
        for p, d, a, b in ((x0, x1 - x0, lo[0], hi[0]), (y0, y1 - y0, lo[1], hi[1])):
            if abs(d) < 1e-12:
                if p < a or p > b:
                    return False
                continue
            ta, tb = (a - p) / d, (b - p) / d
            t0, t1 = max(t0, min(ta, tb)), min(t1, max(ta, tb))
            if t0 > t1:
                return False
        return True


class Roadmap(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    nodes: dict[str, tuple[float, float]]
    edges: list[tuple[str, str]]

    @model_validator(mode="after")
    def _edges_name_nodes(self) -> Roadmap:
        for a, b in self.edges:
            for n in (a, b):
                if n not in self.nodes:
                    raise ValueError(
                        f"roadmap edge [{a}, {b}] names node {n!r}, which is not in roadmap.nodes"
                    )
        return self


class World(BaseModel):
    """A world file. `walls`: segments [x0, y0, x1, y1]; `obstacles`: [cx, cy, sx, sy, height]."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    size: tuple[float, float] = Field(description="extent in x and y from the origin, metres")
    wall_thickness: float = Field(0.1, gt=0.01, le=1.0)
    wall_height: float = Field(2.0, gt=0.3, le=10.0)
    walls: list[tuple[float, float, float, float]]
    obstacles: list[tuple[float, float, float, float, float]] = []
    roadmap: Roadmap

    @field_validator("size")
    @classmethod
    def _positive(cls, v: tuple[float, float]) -> tuple[float, float]:
        if min(v) <= 0:
            raise ValueError(f"size must be positive in x and y, but got {list(v)}")
        return v

    @field_validator("walls")
    @classmethod
    def _axis_aligned(cls, walls: list) -> list:
        for i, (x0, y0, x1, y1) in enumerate(walls):
            if x0 != x1 and y0 != y1:
                raise ValueError(
                    f"wall {i} [{x0}, {y0}, {x1}, {y1}] must be axis-aligned (x0 == x1 or y0 == y1)"
                )
        return walls

    @model_validator(mode="after")
    def _roadmap_is_free(self) -> World:
        # People are 0.25 m wide discs: their edges must clear every box by that much.
        for a, b in self.roadmap.edges:
            (x0, y0), (x1, y1) = self.roadmap.nodes[a], self.roadmap.nodes[b]
            for box in self.boxes:
                if box.segment_hits(x0, y0, x1, y1, margin=0.2):
                    raise ValueError(
                        f"roadmap edge [{a}, {b}] passes within 0.2 m of a {box.kind} at "
                        f"({box.cx:.2f}, {box.cy:.2f}); move a node so people do not walk through it"
                    )
        return self

    @cached_property
    def boxes(self) -> list[Box]:
        """Walls (grown by half the thickness) and obstacles, as boxes."""
        t = self.wall_thickness / 2
        out = []
        for x0, y0, x1, y1 in self.walls:
            out.append(
                Box(
                    cx=(x0 + x1) / 2,
                    cy=(y0 + y1) / 2,
                    hx=abs(x1 - x0) / 2 + t,
                    hy=abs(y1 - y0) / 2 + t,
                    height=self.wall_height,
                    kind="wall",
                )
            )
        for cx, cy, sx, sy, h in self.obstacles:
            out.append(Box(cx=cx, cy=cy, hx=sx / 2, hy=sy / 2, height=h, kind="obstacle"))
        return out

    def is_free(self, x: float, y: float, radius: float) -> bool:
        """Whether a disc of `radius` at (x, y) is inside the world and clear of every box."""
        if not (radius <= x <= self.size[0] - radius and radius <= y <= self.size[1] - radius):
            return False
        return not any(b.contains(x, y, margin=radius) for b in self.boxes)

    def neighbours(self, node: str) -> list[str]:
        out = [b for a, b in self.roadmap.edges if a == node]
        out += [a for a, b in self.roadmap.edges if b == node]
        return out

    def ray_distance(
        self, x: float, y: float, angle: float, max_range: float, min_height: float = 0.0
    ) -> float:
        """Distance along a horizontal ray to the nearest box taller than `min_height` (analytic; slow, tests)."""
        dx, dy = math.cos(angle), math.sin(angle)
        best = max_range
        for b in self.boxes:
            if b.height <= min_height:
                continue
            t0, t1 = 0.0, max_range
            for p, d, c, h in ((x, dx, b.cx, b.hx), (y, dy, b.cy, b.hy)):
                if abs(d) < 1e-12:
                    if abs(p - c) > h:
                        t0, t1 = 1.0, 0.0
                    continue
                ta, tb = (c - h - p) / d, (c + h - p) / d
                t0, t1 = max(t0, min(ta, tb)), min(t1, max(ta, tb))
            if t0 <= t1 and t0 < best:
                best = t0
        return best


def world_path(name: str) -> Path:
    """The file of a world named in a scenario: a bundled name (`office`) or a path to a YAML file."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml"):
        return path
    path = WORLDS_DIR / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in WORLDS_DIR.glob("*.yaml")))
        raise WorldError(f"unknown world {name!r}; bundled worlds: {known}; or give a path to a .yaml file")
    return path


def load_world(name: str) -> World:
    """Load and validate a world; errors name the file and line."""
    return load_model(World, world_path(name))
