"""The simulator on the bus: steps the world in real time on its own thread and publishes what a robot's
drivers would (`/clock`, `/tf`, `/tf_static`, `scan`, `odom`, `camera/image_raw`, `map`), follows
`cmd_vel`, hands out the mission (`initialpose`, `goal_pose`), runs the scenario's scripted events,
and reports the task metrics (telemetry `sim.*`, `sim/status`, a JSON report at the end).

Ground truth for perception and views: `sim/ground_truth` (true odometry, map frame),
`sim/people` (everyone, map frame) and `sim/people_visible` (those the camera sees, robot frame).
The simulator is the world, not the robot: it asks for a higher scheduling priority (when
allowed) so that the robot's CPU load does not slow the world down.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from tether.bus import (
    Node,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
    qos_profile_transient_local,
)
from tether.bus.messages import get_type
from tether.edge import rosmsg
from tether.edge.sim.camera import CameraFrame
from tether.edge.sim.contention import Contention
from tether.edge.sim.scenario import SetPowerMode, StartContention, StopContention, load_scenario
from tether.edge.sim.simulator import Simulator
from tether.settings import settings

__all__ = ["SimNode", "main"]

Twist = get_type("geometry_msgs/msg/Twist")
Path_ = get_type("nav_msgs/msg/Path")
String = get_type("std_msgs/msg/String")


class SimNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("sim", **kwargs)
        p = self.declare_parameter
        scenario_name = p("scenario", "nominal", description="bundled scenario name or a .yaml path").value
        self.duration = float(
            p(
                "duration_s",
                0.0,
                description="simulated seconds to run; 0 = the scenario's",
                min=0.0,
                max=86400.0,
            ).value
        )
        self.rtf_target = float(
            p(
                "real_time_factor", 1.0, description="simulated seconds per wall second", min=0.05, max=20.0
            ).value
        )
        self.report_path = str(
            p("report_path", "", description="where the end-of-run JSON report goes").value
        )
        self.stack = str(p("stack", "robot", description="cgroup stack name (power mode switches)").value)
        self.hardware_profile = str(
            p("hardware_profile", "", description="NAME[:MODE] of the running stack").value
        )
        world_priority = bool(
            p("world_priority", True, description="run the world at nice -5 when allowed").value
        )
        camera = bool(p("camera", True, description="render the camera").value)
        self.wait_for_robot = float(
            p(
                "wait_for_robot_s",
                60.0,
                description="wall seconds the mission waits for the first cmd_vel; 0 = none",
                min=0.0,
                max=3600.0,
            ).value
        )
        self.scenario = load_scenario(scenario_name)
        if self.duration <= 0:
            self.duration = self.scenario.duration_s
        if not self.hardware_profile and self.scenario.hardware_profile:
            self.hardware_profile = self.scenario.hardware_profile
        self.priority_note = "normal"
        if world_priority:
            try:
                os.setpriority(os.PRIO_PROCESS, 0, -5)
                self.priority_note = "nice -5"
            except PermissionError:
                self.priority_note = "normal (no permission for nice -5)"

        best_effort = QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)
        self.pub_clock = self.create_publisher(get_type("rosgraph_msgs/msg/Clock"), "/clock", best_effort)
        self.pub_tf = self.create_publisher(get_type("tf2_msgs/msg/TFMessage"), "/tf", 50)
        self.pub_tf_static = self.create_publisher(
            get_type("tf2_msgs/msg/TFMessage"), "/tf_static", qos_profile_transient_local
        )
        self.pub_scan = self.create_publisher(
            get_type("sensor_msgs/msg/LaserScan"), "scan", qos_profile_sensor_data
        )
        self.pub_odom = self.create_publisher(get_type("nav_msgs/msg/Odometry"), "odom", 20)
        self.pub_image = self.create_publisher(
            get_type("sensor_msgs/msg/Image"), "camera/image_raw", qos_profile_sensor_data
        )
        self.pub_map = self.create_publisher(
            get_type("nav_msgs/msg/OccupancyGrid"), "map", qos_profile_transient_local
        )
        self.pub_goal = self.create_publisher(
            get_type("geometry_msgs/msg/PoseStamped"), "goal_pose", qos_profile_transient_local
        )
        self.pub_initial = self.create_publisher(
            get_type("geometry_msgs/msg/PoseWithCovarianceStamped"),
            "initialpose",
            qos_profile_transient_local,
        )
        self.pub_truth = self.create_publisher(get_type("nav_msgs/msg/Odometry"), "sim/ground_truth", 10)
        self.pub_people = self.create_publisher(get_type("geometry_msgs/msg/PoseArray"), "sim/people", 10)
        self.pub_visible = self.create_publisher(
            get_type("geometry_msgs/msg/PoseArray"), "sim/people_visible", 10
        )
        self.pub_status = self.create_publisher(String, "sim/status", 10)
        self.pub_power = self.create_publisher(String, "hardware/power_mode", qos_profile_transient_local)
        self.create_subscription(Twist, "cmd_vel", self._on_cmd_vel, 10)
        self.create_subscription(Path_, "plan", self._on_plan, 2)

        self.sim = Simulator(
            self.scenario, camera=camera, on_camera_frame=self._on_frame, start=self.wait_for_robot <= 0
        )
        self.contention = Contention(1.0)
        self.quota_cores: float | None = None
        self.events_log: list[dict] = []
        self._lock = threading.Lock()
        self._cmd: tuple[float, float] | None = None
        self._plan = None
        self._rtf = 0.0
        self._slips = 0
        # Headroom: simulated seconds per wall second the loop spends working (stepping, rendering,
        # publishing), sleeps excluded; what the real-time factor would be unpaced. > 1 keeps real time.
        self._rtf_capacity = 0.0
        self._busy_s = 0.0  # over the mission
        self._busy_sim_s = 0.0
        self._wall_start = time.monotonic()
        self._mission_wall = self._wall_start
        self._stop = threading.Event()
        self._finished = False
        self._finalised = False
        runs = settings().artefact_dir("robot", "runs")
        self._report_file = (
            Path(self.report_path)
            if self.report_path
            else runs / f"{time.strftime('%Y%m%d-%H%M%S')}-{self.scenario.name}.json"
        )
        self.telemetry.add_source(self._metrics)
        self._publish_static()
        self._thread = threading.Thread(target=self._loop, name="sim-loop", daemon=True)
        self._thread.start()
        self.get_logger().info(
            f"scenario {self.scenario.name!r}: {self.duration:g} s at real-time factor {self.rtf_target:g}, "
            f"world priority {self.priority_note}, camera {'on' if self.sim.camera else 'off'}"
        )

    # ---- bus inputs (executor thread) -----------------------------------------------------
    def _on_cmd_vel(self, msg) -> None:
        with self._lock:
            self._cmd = (float(msg.linear.x), float(msg.angular.z))

    def _on_plan(self, msg) -> None:
        with self._lock:
            self._plan = rosmsg.path_from_msg(msg)

    # ---- publishing -------------------------------------------------------------------------
    def _publish_static(self) -> None:
        s = self.scenario.start
        spec = self.sim.spec
        self.pub_tf_static.publish(
            rosmsg.tf_msg(
                [
                    (0.0, "base_link", "laser", 0.0, 0.0, spec.lidar_height, 0.0),
                    (0.0, "base_link", "camera", spec.radius - 0.03, 0.0, spec.camera_height, 0.0),
                ]
            )
        )
        self.pub_map.publish(rosmsg.grid_msg(0.0, self.sim.grid_map()))
        self.pub_initial.publish(
            rosmsg.pose_with_covariance_stamped_msg(0.0, "map", s.x, s.y, s.yaw, (0.0025, 0.0025, 0.0004))
        )
        self._publish_goal()
        if self.hardware_profile:
            self.pub_power.publish(String(data=self.hardware_profile))

    def _publish_goal(self) -> None:
        gx, gy = self.sim.goal
        self.pub_goal.publish(rosmsg.pose_stamped_msg(self.sim.time, "map", gx, gy, 0.0))

    def _on_frame(self, frame: CameraFrame) -> None:  # camera thread
        self.pub_image.publish(rosmsg.image_msg(frame.stamp, frame.rgb))

    def _publish_due(self, due: list[str]) -> None:
        sim, t = self.sim, self.sim.time
        if "clock" in due:
            self.pub_clock.publish(rosmsg.clock_msg(t))
        if "scan" in due:
            spec = sim.lidar.spec
            self.pub_scan.publish(
                rosmsg.scan_msg(
                    t,
                    sim.scan(),
                    spec.angle_min,
                    spec.angle_increment,
                    spec.range_min,
                    spec.range_max,
                    1.0 / spec.rate_hz,
                )
            )
        if "odom" in due:
            x, y, yaw, v, w = sim.odom()
            self.pub_odom.publish(rosmsg.odometry_msg(t, x, y, yaw, v, w))
            self.pub_tf.publish(rosmsg.tf_msg([(t, "odom", "base_link", x, y, 0.0, yaw)]))
            tx, ty, tyaw = sim.pose
            tv, tw = sim.body_velocity
            truth = rosmsg.odometry_msg(t, tx, ty, tyaw, tv, tw, var=0.0)
            truth.header.frame_id = "map"
            self.pub_truth.publish(truth)
        if "camera" in due and sim.request_camera():
            self.pub_visible.publish(rosmsg.pose_array_msg(t, "base_link", sim.people_visible()))
        if "status" in due:
            self.pub_people.publish(rosmsg.pose_array_msg(t, "map", sim.crowd.positions()))
            self.pub_status.publish(String(data=json.dumps(self.status())))

    # ---- the real-time loop (sim thread) ---------------------------------------------------
    def _loop(self) -> None:
        try:
            self._run()
        except Exception:
            self.get_logger().exception("the simulation loop failed")
        finally:
            self._finish()

    def _run(self) -> None:
        sim = self.sim
        wall0 = time.monotonic()
        sim0 = sim.time
        window = (wall0, sim.time)
        next_report = wall0 + 1.0
        window_busy = 0.0
        waiting_since = wall0
        while not self._stop.is_set() and sim.mission_time < self.duration:
            now = time.monotonic()
            ahead = (sim.time - sim0) / self.rtf_target - (now - wall0)  # s of wall time the sim is ahead
            if ahead > 0:
                time.sleep(min(ahead, 0.02))
                continue
            if -ahead > 0.25:
                # More than 0.25 s behind: the CPU cannot keep up. Drop the backlog instead of
                # racing through it (sensors would come in bursts); the RTF shows the slip.
                wall0 = now - (sim.time - sim0) / self.rtf_target
                self._slips += 1
            with self._lock:
                if sim.mission_start is None and (
                    self._cmd is not None or now - waiting_since > self.wait_for_robot
                ):
                    # The robot's software is up (or we waited long enough): the mission starts now.
                    sim.start_mission()
                    self._mission_wall = now
                    self.get_logger().info(
                        f"mission starts at simulated {sim.time:.2f} s"
                        + ("" if self._cmd is not None else f" (no cmd_vel after {self.wait_for_robot:g} s)")
                    )
                if self._cmd is not None:
                    sim.set_cmd_vel(*self._cmd)
                    self._cmd = None
                if self._plan is not None:
                    sim.set_plan(self._plan)
                    self._plan = None
            sim_before = sim.time
            result = sim.step()
            self._publish_due(result.due)
            if result.goal_changed:
                self._publish_goal()
            for event in result.events:
                self._apply(event)
            busy = time.monotonic() - now
            window_busy += busy
            if sim.mission_start is not None:
                self._busy_s += busy
                self._busy_sim_s += sim.time - sim_before
            if now >= next_report:
                self._rtf = (sim.time - window[1]) / max(now - window[0], 1e-6)
                self._rtf_capacity = (sim.time - window[1]) / max(window_busy, 1e-6)
                window = (now, sim.time)
                window_busy = 0.0
                next_report = now + 1.0
                sim.metrics.wall_time_s = now - self._mission_wall
                self._write_report(final=False)

    def _apply(self, event) -> None:
        entry = {"at_s": round(self.sim.mission_time, 3), "action": event.action}
        if isinstance(event, StartContention):
            self.contention = Contention(event.workers_per_core, stack=self.stack)
            entry["pids"] = self.contention.start()
            where = (
                f" in {len(self.contention.cgroups)} groups under tether/{self.stack}"
                if self.contention.cgroups
                else ""
            )
            self.get_logger().info(
                f"contention: started {len(entry['pids'])} busy processes {entry['pids']}{where}"
            )
        elif isinstance(event, StopContention):
            self.contention.stop()
            self.get_logger().info("contention: stopped")
        elif isinstance(event, SetPowerMode):
            from tether.edge.emulation import set_power_mode

            name = self.hardware_profile.partition(":")[0]
            spec = f"{name}:{event.mode}"
            try:
                self.quota_cores = set_power_mode(self.stack, spec)
                entry["quota_cores"] = self.quota_cores
                self.hardware_profile = spec
                self.pub_power.publish(String(data=spec))
                self.get_logger().info(f"power mode {spec}: stack quota {self.quota_cores} cores")
            except Exception as exc:  # emulation unavailable: report it, the run goes on
                entry["error"] = str(exc)
                self.get_logger().warning(f"power mode {spec} not applied: {exc}")
        else:
            entry["count"] = getattr(event, "count", None)
        self.events_log.append(entry)

    # ---- metrics and report -----------------------------------------------------------------
    def _metrics(self) -> dict[str, float]:
        m = self.sim.metrics
        return {
            "sim.rtf": self._rtf,
            "sim.rtf_capacity": self._rtf_capacity,
            "sim.time_s": self.sim.time,
            "sim.mission_time_s": self.sim.mission_time,
            "sim.collisions": float(m.collisions),
            "sim.person_contacts": float(m.person_contacts),
            "sim.goals_reached": float(m.goals_reached),
            "sim.goal_reached": 1.0 if m.goals_reached > 0 else 0.0,
            "sim.path_length_m": m.path_length_m,
            "sim.tracking_error_m": m.tracking_recent_m,
            "sim.tracking_error_mean_m": m.tracking_mean_m,
            "sim.tracking_error_max_m": m.tracking_max_m,
            "sim.cmd_vel_rate_hz": m.cmd_vel_received / self.sim.mission_time
            if self.sim.mission_time > 0
            else 0.0,
            "sim.slips": float(self._slips),
            "sim.contention": 1.0 if self.contention.running else 0.0,
        }

    def status(self) -> dict:
        x, y, yaw = self.sim.pose
        return {
            "time_s": round(self.sim.time, 3),
            "mission_time_s": round(self.sim.mission_time, 3),
            "pose": [round(x, 3), round(y, 3), round(yaw, 3)],
            "goal": list(self.sim.goal),
            "goal_index": self.sim.goal_index,
            "people": [[round(a, 2), round(b, 2)] for a, b in self.sim.crowd.positions()],
            "metrics": {k: round(v, 4) for k, v in self._metrics().items()},
            "hardware_profile": self.hardware_profile,
        }

    def report(self) -> dict:
        m = self.sim.metrics
        m.wall_time_s = time.monotonic() - self._mission_wall
        return {
            "scenario": self.scenario.name,
            "duration_s": self.duration,
            "mission_start_s": self.sim.mission_start,
            "finished": self._finished,
            "world_priority": self.priority_note,
            "hardware_profile": self.hardware_profile or None,
            "metrics": m.summary(),
            "rtf_last_window": self._rtf,
            "rtf_capacity": self._busy_sim_s / self._busy_s if self._busy_s > 0 else None,
            "slips": self._slips,
            "events": self.events_log,
        }

    def _write_report(self, final: bool) -> None:
        path = self._report_file
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.report(), indent=2, default=float) + "\n")
        tmp.replace(path)
        if final and not self.report_path:
            (path.parent / "latest.json").write_text(path.read_text())

    def _finish(self) -> None:
        if self._finalised:
            return
        self._finalised = True
        self._finished = self.sim.mission_time >= self.duration
        self.contention.stop()
        try:
            self._write_report(final=True)
        except OSError as exc:
            self.get_logger().error(f"cannot write the report: {exc}")
        m = self.sim.metrics.summary()
        self.get_logger().info(
            f"run over after {self.sim.mission_time:.1f} s: goals {m['goals_reached']}, collisions {m['collisions']}, "
            f"path {m['path_length_m']:.1f} m, tracking error mean {m['tracking_mean_m']:.3f} m, RTF {m['rtf']:.2f}"
        )
        if not self._stop.is_set():
            self.executor.shutdown()  # the run is over: the process exits

    def close(self) -> None:
        """Stop the loop, the contention and the camera (run_node calls this before destroy_node)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self.contention.stop()
        self.sim.close()


def main(args=None) -> None:
    from tether.bus import run_node

    raise SystemExit(run_node(SimNode, args))
