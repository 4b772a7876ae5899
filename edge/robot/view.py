"""A live text view of a running simulation: the floor plan with the robot, its goal and the people,
and the simulator's metrics, from `sim/status` on the bus (what `tether robot run` shows).
"""

from __future__ import annotations

import json
import threading

import numpy as np
from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from tether.edge.gridmap import GridMap

__all__ = ["RobotView", "floor_plan"]


def floor_plan(grid: GridMap, status: dict, cols: int = 80) -> Text:
    """The map shrunk to `cols` characters wide (2:1 cells), with R (robot), G (goal), p (people)."""
    occ = grid.occupied()
    h, w = occ.shape
    cell = w / cols
    rows = max(1, int(h / (2 * cell)))
    canvas = np.full((rows, cols), " ", dtype="<U1")
    # Max-pool each character's block of cells, so that thin walls stay visible.
    r_edges = np.minimum((np.arange(rows + 1) * 2 * cell).astype(int), h)
    c_edges = np.minimum((np.arange(cols + 1) * cell).astype(int), w)
    for r in range(rows):
        for c in range(cols):
            if occ[
                r_edges[r] : max(r_edges[r + 1], r_edges[r] + 1),
                c_edges[c] : max(c_edges[c + 1], c_edges[c] + 1),
            ].any():
                canvas[r, c] = "#"

    def put(x: float, y: float, ch: str) -> None:
        c = int((x - grid.origin_x) / grid.resolution / cell)
        r = int((y - grid.origin_y) / grid.resolution / (2 * cell))
        if 0 <= r < rows and 0 <= c < cols:
            canvas[r, c] = ch

    for px, py in status.get("people", []):
        put(px, py, "p")
    if "goal" in status:
        put(*status["goal"], "G")
    if "pose" in status:
        put(status["pose"][0], status["pose"][1], "R")
    text = Text()
    for r in range(rows - 1, -1, -1):  # north up
        line = "".join(canvas[r])
        for ch in line:
            style = {"R": "bold green", "G": "bold yellow", "p": "magenta", "#": "grey50"}.get(ch)
            text.append(ch, style=style)
        text.append("\n")
    return text


class RobotView:
    """Subscribes to `sim/status` with its own bus node; `render()` is a rich renderable of the latest state."""

    KEYS = (
        ("sim.time_s", "sim time", "s"),
        ("sim.rtf", "real-time factor", ""),
        ("sim.goals_reached", "goals reached", ""),
        ("sim.collisions", "collisions", ""),
        ("sim.person_contacts", "person contacts", ""),
        ("sim.path_length_m", "path length", "m"),
        ("sim.tracking_error_m", "tracking error (recent)", "m"),
        ("sim.cmd_vel_rate_hz", "cmd_vel rate", "Hz"),
        ("sim.contention", "background contention", ""),
    )

    def __init__(self, grid: GridMap, title: str) -> None:
        from tether.bus import Node
        from tether.bus.messages import get_type

        self.grid = grid
        self.title = title
        self.status: dict = {}
        self._lock = threading.Lock()
        self.node = Node("robot_view", enable_telemetry=False)
        self.node.create_subscription(get_type("std_msgs/msg/String"), "sim/status", self._on_status, 1)

    def _on_status(self, msg) -> None:
        with self._lock:
            self.status = json.loads(msg.data)

    def render(self) -> Panel:
        with self._lock:
            status = dict(self.status)
        table = Table.grid(padding=(0, 2))
        metrics = status.get("metrics", {})
        for key, label, unit in self.KEYS:
            v = metrics.get(key)
            table.add_row(label, "-" if v is None else f"{v:.3g} {unit}".strip())
        if status.get("hardware_profile"):
            table.add_row("hardware profile", status["hardware_profile"])
        return Panel(Group(floor_plan(self.grid, status), table), title=self.title)

    def close(self) -> None:
        self.node.destroy_node()
