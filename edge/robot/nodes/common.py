"""What several robot nodes need from the bus: the robot's pose in the map frame, and parameter validation.

The pose is map->odom (from localization's `/tf`, or the `initialpose` until localization speaks)
composed with the latest wheel odometry (odom->base_link), as a tf2 lookup of map->base_link would.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from tether.bus import Node, SetParametersResult, qos_profile_transient_local
from tether.bus.messages import get_type
from tether.edge import rosmsg
from tether.edge.robot.geometry import compose

__all__ = ["PoseTracker", "on_parameters"]


class PoseTracker:
    """Subscribes `odom`, `/tf` and `initialpose` on `node`; `pose()` is map->base_link or None."""

    def __init__(self, node: Node) -> None:
        self._lock = threading.Lock()
        self.map_odom: tuple[float, float, float] | None = None
        self.odom: tuple[float, float, float] | None = None
        self.velocity = (0.0, 0.0)
        self.odom_stamp = 0.0
        self.localized = False  # map->odom has come from localization
        node.create_subscription(get_type("nav_msgs/msg/Odometry"), "odom", self._on_odom, 5)
        node.create_subscription(get_type("tf2_msgs/msg/TFMessage"), "/tf", self._on_tf, 20)
        node.create_subscription(
            get_type("geometry_msgs/msg/PoseWithCovarianceStamped"),
            "initialpose",
            self._on_initial,
            qos_profile_transient_local,
        )

    def _on_odom(self, msg) -> None:
        t, x, y, yaw, v, w = rosmsg.odometry_from_msg(msg)
        with self._lock:
            self.odom, self.velocity, self.odom_stamp = (x, y, yaw), (v, w), t

    def _on_tf(self, msg) -> None:
        for _, parent, child, x, y, yaw in rosmsg.transforms_from_msg(msg):
            if parent == "map" and child == "odom":
                with self._lock:
                    self.map_odom = (x, y, yaw)
                    self.localized = True

    def _on_initial(self, msg) -> None:
        # The odometry frame starts where the robot starts, so until localization publishes,
        # map->odom is the initial pose.
        with self._lock:
            if not self.localized:
                self.map_odom = rosmsg.pose2d_from_pose(msg.pose.pose)

    def pose(self) -> tuple[float, float, float] | None:
        with self._lock:
            if self.map_odom is None or self.odom is None:
                return None
            return compose(self.map_odom, self.odom)


def on_parameters(node: Node, apply: Callable[[dict], str | None]) -> None:
    """Register `apply({name: value})` for parameter changes; it returns None, or why it refuses."""

    def callback(params) -> SetParametersResult:
        reason = apply({p.name: p.value for p in params})
        return SetParametersResult(successful=reason is None, reason=reason or "")

    node.add_on_set_parameters_callback(callback)
