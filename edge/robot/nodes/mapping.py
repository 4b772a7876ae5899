"""The mapping node: a live occupancy map from `scan_filtered` and the localized pose, on `map_live` (1 Hz).

Non-core load, as a robot's logging or dashboard processes are: useful, not safety-relevant.
Parameters `resolution` and `update_rate_hz` set its cost.
"""

from __future__ import annotations

import time

from tether.bus import Node, qos_profile_sensor_data
from tether.bus.messages import get_type
from tether.edge import rosmsg
from tether.edge.robot.mapping import MappingConfig, OccupancyMapper
from tether.edge.robot.nodes.common import PoseTracker, on_parameters

__all__ = ["MappingNode", "main"]


class MappingNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("mapping", **kwargs)
        res = self.declare_parameter("resolution", 0.05, description="map cell size, m", min=0.02, max=0.5)
        rate = self.declare_parameter(
            "update_rate_hz", 10.0, description="scans integrated per second", min=0.1, max=50.0
        )
        self.mapper = OccupancyMapper(MappingConfig(resolution=float(res.value)))
        self.update_period = 1.0 / float(rate.value)
        self.tracker = PoseTracker(self)
        self._last = 0.0
        self._ms = 0.0
        self.pub = self.create_publisher(get_type("nav_msgs/msg/OccupancyGrid"), "map_live", 1)
        self.create_subscription(
            get_type("sensor_msgs/msg/LaserScan"), "scan_filtered", self._on_scan, qos_profile_sensor_data
        )
        self.create_timer(1.0, self._publish)
        self.telemetry.add_source(
            lambda: {"mapping.update_ms": self._ms, "mapping.updates": float(self.mapper.updates)}
        )
        on_parameters(self, self._apply)

    def _apply(self, changes: dict) -> str | None:
        if "resolution" in changes:
            try:
                self.mapper = OccupancyMapper(MappingConfig(resolution=float(changes["resolution"])))
            except ValueError as exc:
                return str(exc)
        if "update_rate_hz" in changes:
            self.update_period = 1.0 / float(changes["update_rate_hz"])
        return None

    def _on_scan(self, msg) -> None:
        now = time.monotonic()
        pose = self.tracker.pose()
        if pose is None or now - self._last < self.update_period:
            return
        self._last = now
        t0 = time.perf_counter()
        _, ranges, angles = rosmsg.scan_from_msg(msg)
        self.mapper.update(pose, ranges, angles)
        self._ms = 0.9 * self._ms + 0.1 * (time.perf_counter() - t0) * 1e3

    def _publish(self) -> None:
        if self.mapper.updates:
            self.pub.publish(rosmsg.grid_msg(self.tracker.odom_stamp, self.mapper.grid()))


def main(args=None) -> None:
    from tether.bus import run_node

    raise SystemExit(run_node(MappingNode, args))
