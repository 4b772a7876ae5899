"""Moving people: kinematic walkers on the world's roadmap (a random walk from node to node, with pauses).

People are scripted, not simulated: they do not steer around the robot, which is what makes the
robot's avoidance matter, but like most people they stop when the robot is right in front of
them, and walk on after a few seconds even if it is still there (so nobody waits forever).
Positions in the map frame, metres.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tether.edge.sim.world import World

__all__ = ["Crowd", "Walker"]


@dataclass
class Walker:
    x: float
    y: float
    target: str  # roadmap node walked towards
    previous: str
    speed: float  # m/s
    pause: float  # s left standing at the current node
    heading: float = 0.0
    yielded: float = 0.0  # s spent waiting for the robot to pass


class Crowd:
    """`count` walkers with speeds drawn from `speed_range`; deterministic for a seed."""

    YIELD_S = 3.0  # how long a person waits for the robot in their way before walking on

    def __init__(
        self,
        world: World,
        count: int,
        speed_range: tuple[float, float] = (0.4, 1.1),
        pause_range: tuple[float, float] = (0.0, 3.0),
        seed: int = 0,
        avoid: tuple[float, float, float] | None = None,
    ) -> None:
        self.world = world
        self.rng = np.random.default_rng(seed)
        self.speed_range = speed_range
        self.pause_range = pause_range
        self.walkers: list[Walker] = []
        for _ in range(count):
            self.walkers.append(self._spawn(avoid))

    def _spawn(self, avoid: tuple[float, float, float] | None) -> Walker:
        # Start somewhere along a random edge, away from `avoid` = (x, y, radius) (the robot's start).
        for _ in range(100):
            a, b = self.world.roadmap.edges[self.rng.integers(len(self.world.roadmap.edges))]
            if self.rng.random() < 0.5:
                a, b = b, a
            (x0, y0), (x1, y1) = self.world.roadmap.nodes[a], self.world.roadmap.nodes[b]
            t = self.rng.random()
            x, y = x0 + t * (x1 - x0), y0 + t * (y1 - y0)
            if avoid is None or np.hypot(x - avoid[0], y - avoid[1]) > avoid[2]:
                break
        return Walker(
            x=x, y=y, target=b, previous=a, speed=float(self.rng.uniform(*self.speed_range)), pause=0.0
        )

    def add(self, count: int, avoid: tuple[float, float, float] | None = None) -> None:
        for _ in range(count):
            self.walkers.append(self._spawn(avoid))

    def step(self, dt: float, robot: tuple[float, float] | None = None) -> None:
        """Advance every walker by dt seconds; `robot` = (x, y) of the robot, whom people let pass."""
        for w in self.walkers:
            if w.pause > 0:
                w.pause = max(0.0, w.pause - dt)
                continue
            tx, ty = self.world.roadmap.nodes[w.target]
            dx, dy = tx - w.x, ty - w.y
            dist = float(np.hypot(dx, dy))
            if robot is not None and dist > 1e-6:
                rx, ry = robot[0] - w.x, robot[1] - w.y
                ahead = (rx * dx + ry * dy) / dist  # m along the walking direction
                blocking = 0 < ahead < 1.2 and abs(rx * dy - ry * dx) / dist < 0.7
                if blocking and w.yielded < self.YIELD_S:
                    w.yielded += dt
                    continue
                if not blocking:
                    w.yielded = 0.0
            step = w.speed * dt
            if dist <= step:
                w.x, w.y = tx, ty
                options = self.world.neighbours(w.target)
                # Turn back only at a dead end, as people in a corridor do.
                forward = [n for n in options if n != w.previous] or options
                w.previous, w.target = w.target, forward[self.rng.integers(len(forward))]
                if self.rng.random() < 0.3:
                    w.pause = float(self.rng.uniform(*self.pause_range))
            else:
                w.x += step * dx / dist
                w.y += step * dy / dist
                w.heading = float(np.arctan2(dy, dx))

    def positions(self) -> np.ndarray:
        """(N, 2) positions, metres."""
        return np.array([[w.x, w.y] for w in self.walkers], dtype=np.float64).reshape(-1, 2)
