"""The LiDAR processing node: `scan` -> filter -> `scan_filtered` (ROS's laser_filters, 40-60 Hz on a real robot).

Parameter `window` (beams in the median filter) sets the cost per scan.
"""

from __future__ import annotations

import time

from tether.bus import Node, qos_profile_sensor_data
from tether.bus.messages import get_type
from tether.edge.robot.nodes.common import on_parameters
from tether.edge.robot.scan_filter import ScanFilter, ScanFilterConfig

__all__ = ["ScanFilterNode", "main"]

LaserScan = get_type("sensor_msgs/msg/LaserScan")


class ScanFilterNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("scan_filter", **kwargs)
        window = self.declare_parameter(
            "window", 5, description="beams in the median filter (odd)", min=1, max=99
        )
        rmax = self.declare_parameter(
            "range_max", 10.0, description="longest range kept, m", min=0.5, max=100.0
        )
        self.filter = ScanFilter(ScanFilterConfig(window=int(window.value), range_max=float(rmax.value)))
        self.pub = self.create_publisher(LaserScan, "scan_filtered", qos_profile_sensor_data)
        self.create_subscription(LaserScan, "scan", self._on_scan, 1)
        self._ms = 0.0
        self.telemetry.add_source(lambda: {"scan_filter.compute_ms": self._ms})
        on_parameters(self, self._apply)

    def _apply(self, changes: dict) -> str | None:
        cfg = self.filter.config
        try:
            cfg = ScanFilterConfig(
                window=int(changes.get("window", cfg.window)),
                range_min=cfg.range_min,
                range_max=float(changes.get("range_max", cfg.range_max)),
            )
        except ValueError as exc:
            return str(exc)
        self.filter = ScanFilter(cfg)
        return None

    def _on_scan(self, msg) -> None:
        t0 = time.perf_counter()
        msg.ranges = self.filter.filter(msg.ranges, msg.angle_increment)
        self.pub.publish(msg)
        self._ms = 0.9 * self._ms + 0.1 * (time.perf_counter() - t0) * 1e3


def main(args=None) -> None:
    from tether.bus import run_node

    raise SystemExit(run_node(ScanFilterNode, args))
