"""The navigation node: global plan to `goal_pose` on the map, local control by trajectory sampling -> `cmd_vel`.

`cmd_vel` is the robot's core topic (ConfigBot's constraint: its rate stays above a threshold).
A control cycle runs every 1/`control_rate_hz` seconds and costs O(`num_samples`); when the
node is starved of CPU the cycles stretch, the rate drops, and every command is computed from
an older state, so the robot strays from its plan.
"""

from __future__ import annotations

import time

from tether.bus import Node, qos_profile_sensor_data, qos_profile_transient_local
from tether.bus.messages import get_type
from tether.edge import rosmsg
from tether.edge.robot.controller import ControllerConfig
from tether.edge.robot.navigator import Navigator, NavigatorConfig
from tether.edge.robot.nodes.common import PoseTracker, on_parameters

__all__ = ["NavigationNode", "main"]


class NavigationNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("navigation", **kwargs)
        ns = self.declare_parameter(
            "num_samples", 600, description="trajectories sampled per control cycle", min=8, max=20000
        )
        rate = self.declare_parameter(
            "control_rate_hz", 30.0, description="control cycles per second", min=1.0, max=100.0
        )
        tol = self.declare_parameter(
            "goal_tolerance_m",
            0.25,
            description="distance at which a goal counts as reached",
            min=0.05,
            max=2.0,
        )
        self.control_rate = float(rate.value)
        self.nav_config = NavigatorConfig(
            controller=ControllerConfig(num_samples=int(ns.value)), goal_tolerance_m=float(tol.value)
        )
        self.nav: Navigator | None = None
        self.tracker = PoseTracker(self)
        self._scan = None
        self._ms = 0.0
        self._cycles = 0
        self.pub_cmd = self.create_publisher(get_type("geometry_msgs/msg/Twist"), "cmd_vel", 10)
        self.pub_plan = self.create_publisher(
            get_type("nav_msgs/msg/Path"), "plan", qos_profile_transient_local
        )
        self.create_subscription(
            get_type("nav_msgs/msg/OccupancyGrid"), "map", self._on_map, qos_profile_transient_local
        )
        self.create_subscription(
            get_type("geometry_msgs/msg/PoseStamped"), "goal_pose", self._on_goal, qos_profile_transient_local
        )
        self.create_subscription(
            get_type("sensor_msgs/msg/LaserScan"), "scan_filtered", self._on_scan, qos_profile_sensor_data
        )
        self._timer = self.create_timer(1.0 / self.control_rate, self._control)
        self._goal: tuple[float, float] | None = None
        self.telemetry.add_source(self._metrics)
        on_parameters(self, self._apply)

    def _metrics(self) -> dict[str, float]:
        return {
            "navigation.compute_ms": self._ms,
            "navigation.num_samples": float(self.nav_config.controller.num_samples),
            "navigation.plans": float(self.nav.plans_made if self.nav else 0),
            "navigation.plan_ms": self.nav.last_plan_ms if self.nav else 0.0,
            **{f"navigation.plans.{k}": float(v) for k, v in (self.nav.replans if self.nav else {}).items()},
        }

    def _apply(self, changes: dict) -> str | None:
        try:
            ctrl = ControllerConfig(
                num_samples=int(changes.get("num_samples", self.nav_config.controller.num_samples))
            )
        except ValueError as exc:
            return str(exc)
        self.nav_config = NavigatorConfig(
            controller=ctrl,
            goal_tolerance_m=float(changes.get("goal_tolerance_m", self.nav_config.goal_tolerance_m)),
        )
        if self.nav is not None:
            self.nav.set_controller(ctrl)
            self.nav.config = self.nav_config
        if "control_rate_hz" in changes:
            self.control_rate = float(changes["control_rate_hz"])
            self._timer.destroy()
            self._timer = self.create_timer(1.0 / self.control_rate, self._control)
        return None

    def _on_map(self, msg) -> None:
        self.nav = Navigator(rosmsg.grid_from_msg(msg), self.nav_config)
        if self._goal is not None:
            self.nav.set_goal(*self._goal)

    def _on_goal(self, msg) -> None:
        self._goal = (float(msg.pose.position.x), float(msg.pose.position.y))
        if self.nav is not None:
            self.nav.set_goal(*self._goal)

    def _on_scan(self, msg) -> None:
        self._scan = msg

    def _control(self) -> None:
        pose = self.tracker.pose()
        if self.nav is None or pose is None:
            return
        t0 = time.perf_counter()
        nav = self.nav
        nav.set_pose(pose)
        nav.velocity = self.tracker.velocity
        if self._scan is not None:
            _, ranges, angles = rosmsg.scan_from_msg(self._scan)
            nav.set_scan(ranges, angles, pose)  # the LiDAR sits at base_link's origin
        now = self.get_clock().now().nanoseconds / 1e9
        v, w, changed = nav.step(now if now > 0 else time.monotonic())
        self.pub_cmd.publish(rosmsg.twist_msg(v, w))
        if changed:
            self.get_logger().debug(f"new plan ({nav.replans}), {nav.last_plan_ms:.0f} ms")
        if changed and len(nav.plan):
            self.pub_plan.publish(rosmsg.path_msg(self.tracker.odom_stamp, nav.plan))
        self._cycles += 1
        self._ms = 0.9 * self._ms + 0.1 * (time.perf_counter() - t0) * 1e3


def main(args=None) -> None:
    from tether.bus import run_node

    raise SystemExit(run_node(NavigationNode, args))
