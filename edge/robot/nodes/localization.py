"""The localization node: a particle filter (AMCL-like) on `scan_filtered` and `odom` against `map`.

Publishes map->odom on `/tf` and the estimate on `amcl_pose`. Parameter `num_particles` sets
the cost per update (30-40 Hz on a real robot); a starved filter updates late, the map->odom
correction goes stale, and odometry drift reaches the navigation.
"""

from __future__ import annotations

import collections
import time

from tether.bus import Node, qos_profile_transient_local
from tether.bus.messages import get_type
from tether.edge import rosmsg
from tether.edge.robot.geometry import compose, invert
from tether.edge.robot.localization import LikelihoodField, ParticleFilter, ParticleFilterConfig
from tether.edge.robot.nodes.common import on_parameters

__all__ = ["LocalizationNode", "main"]


class LocalizationNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("localization", **kwargs)
        n = self.declare_parameter(
            "num_particles", 1000, description="particles in the filter", min=50, max=20000
        )
        b = self.declare_parameter("beams", 60, description="scan beams used per update", min=8, max=720)
        self.config = ParticleFilterConfig(num_particles=int(n.value), beams=int(b.value))
        self.pf: ParticleFilter | None = None
        self._initial: tuple[float, float, float] | None = None
        # Recent wheel odometry (stamp, pose): the filter moves by the odometry at each scan's stamp,
        # as a tf2 lookup at the scan's time would, not by whatever odometry arrived last.
        self._odom: collections.deque = collections.deque(maxlen=200)
        self._ms = 0.0
        self._var = (0.0, 0.0, 0.0)
        self.pub_tf = self.create_publisher(get_type("tf2_msgs/msg/TFMessage"), "/tf", 20)
        self.pub_pose = self.create_publisher(
            get_type("geometry_msgs/msg/PoseWithCovarianceStamped"), "amcl_pose", 10
        )
        self.create_subscription(
            get_type("nav_msgs/msg/OccupancyGrid"), "map", self._on_map, qos_profile_transient_local
        )
        self.create_subscription(
            get_type("geometry_msgs/msg/PoseWithCovarianceStamped"),
            "initialpose",
            self._on_initial,
            qos_profile_transient_local,
        )
        self.create_subscription(get_type("nav_msgs/msg/Odometry"), "odom", self._on_odom, 5)
        self.create_subscription(get_type("sensor_msgs/msg/LaserScan"), "scan_filtered", self._on_scan, 1)
        self.telemetry.add_source(self._metrics)
        on_parameters(self, self._apply)

    def _metrics(self) -> dict[str, float]:
        return {
            "localization.update_ms": self._ms,
            "localization.std_xy_m": (self._var[0] + self._var[1]) ** 0.5,
            "localization.particles": float(self.config.num_particles),
        }

    def _apply(self, changes: dict) -> str | None:
        try:
            cfg = ParticleFilterConfig(
                num_particles=int(changes.get("num_particles", self.config.num_particles)),
                beams=int(changes.get("beams", self.config.beams)),
            )
        except ValueError as exc:
            return str(exc)
        if self.pf is not None:
            if cfg.num_particles != self.pf.config.num_particles:
                self.pf.resize(cfg.num_particles)
            self.pf.config = cfg
        self.config = cfg
        return None

    def _on_map(self, msg) -> None:
        self.pf = ParticleFilter(LikelihoodField(rosmsg.grid_from_msg(msg)), self.config)
        if self._initial is not None:
            self.pf.initialise(self._initial)

    def _on_initial(self, msg) -> None:
        self._initial = rosmsg.pose2d_from_pose(msg.pose.pose)
        if self.pf is not None:
            self.pf.initialise(self._initial)
            self.pf._last_odom = None

    def _on_odom(self, msg) -> None:
        t, x, y, yaw, _, _ = rosmsg.odometry_from_msg(msg)
        self._odom.append((t, (x, y, yaw)))

    def _odom_at(self, stamp: float) -> tuple[float, float, float]:
        """The odometry pose nearest in time to `stamp` (odometry comes at 50 Hz: within 10 ms)."""
        best = min(self._odom, key=lambda item: abs(item[0] - stamp))
        return best[1]

    def _on_scan(self, msg) -> None:
        if self.pf is None or self._initial is None or not self._odom:
            return
        t0 = time.perf_counter()
        stamp, ranges, angles = rosmsg.scan_from_msg(msg)
        odom = self._odom_at(stamp)
        self.pf.predict(odom)
        self.pf.update(ranges, angles)
        est, self._var = self.pf.estimate()
        mo = compose(est, invert(odom))  # map->odom such that map->odom->base_link = the estimate
        self.pub_tf.publish(rosmsg.tf_msg([(stamp, "map", "odom", mo[0], mo[1], 0.0, mo[2])]))
        self.pub_pose.publish(rosmsg.pose_with_covariance_stamped_msg(stamp, "map", *est, self._var))
        self._ms = 0.9 * self._ms + 0.1 * (time.perf_counter() - t0) * 1e3


def main(args=None) -> None:
    from tether.bus import run_node

    raise SystemExit(run_node(LocalizationNode, args))
