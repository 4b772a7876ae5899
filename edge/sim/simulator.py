"""The simulated robot in its world: physics, people, sensors, the mission and its metrics. No bus I/O.

One `step()` advances the simulation by `control_dt` (5 ms: two 2.5 ms physics steps) and
returns the sensors that fall due and the scripted events that fired; the caller (the bus
node, a test, a lock-step harness) publishes and acts on them. All poses are in the map frame
(the odometry's own frame starts at the robot's start pose), metres and radians.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import mujoco
import numpy as np

from tether.edge.gridmap import GridMap
from tether.edge.sim.camera import CameraFrame, CameraSpec, CameraWorker
from tether.edge.sim.drive import OdometryNoise, RobotSpec, WheelOdometry, clip_command, wrap_angle
from tether.edge.sim.lidar import Lidar, LidarSpec
from tether.edge.sim.metrics import RunMetrics, distance_to_polyline
from tether.edge.sim.model import PARKED_Z, build_model
from tether.edge.sim.occupancy import rasterise
from tether.edge.sim.people import Crowd
from tether.edge.sim.scenario import AddPeople, Scenario
from tether.edge.sim.world import load_world

__all__ = ["Simulator", "StepResult"]

CONTROL_DT = 0.005  # s per step(): two physics steps of 2.5 ms


@dataclass
class StepResult:
    """What fell due during one step: sensor names ("scan", "odom", "camera", "clock", "status") and events."""

    due: list[str]
    events: list  # scenario events that fired (AddPeople is applied already)
    goal_changed: bool


class Simulator:
    """A scenario, built and running. `camera=False` skips rendering (tests, headless physics).

    The mission (goals, scripted events, metrics, the run's duration) starts at `start_mission()`;
    `start=False` leaves that to the caller, e.g. the bus node starts it when the robot's software
    sends its first command, so slow process start-up does not eat into a run.
    """

    def __init__(
        self,
        scenario: Scenario,
        *,
        spec: RobotSpec | None = None,
        camera: bool = True,
        on_camera_frame: Callable[[CameraFrame], None] | None = None,
        clock_rate_hz: float = 100.0,
        status_rate_hz: float = 5.0,
        start: bool = True,
    ) -> None:
        self.scenario = scenario
        self.spec = spec or RobotSpec()
        self.world = load_world(scenario.world)
        self.model, self.index = build_model(self.world, self.spec, scenario.max_people)
        self.data = mujoco.MjData(self.model)
        s = scenario.start
        self.data.qpos[[self.index.qpos_x, self.index.qpos_y, self.index.qpos_yaw]] = (s.x, s.y, s.yaw)
        self.nsub = round(CONTROL_DT / self.model.opt.timestep)
        self.crowd = Crowd(
            self.world,
            scenario.people.count,
            (scenario.people.speed_min_mps, scenario.people.speed_max_mps),
            seed=scenario.seed,
            avoid=(s.x, s.y, 2.0),
        )
        sensors = scenario.sensors
        self.lidar = Lidar(
            self.model,
            self.index,
            LidarSpec(
                beams=sensors.lidar_beams,
                range_max=sensors.lidar_range_max_m,
                noise_std=sensors.lidar_noise_m,
                rate_hz=sensors.lidar_rate_hz,
            ),
            seed=scenario.seed,
        )
        self.odometry = WheelOdometry(
            self.spec, OdometryNoise(sensors.odom_slip, sensors.odom_radius_error, seed=scenario.seed + 1)
        )
        self.camera_spec = CameraSpec(sensors.camera_width, sensors.camera_height, sensors.camera_rate_hz)
        self.camera: CameraWorker | None = None
        if camera and sensors.camera_rate_hz > 0:
            self.camera = CameraWorker(
                self.model, self.index, self.camera_spec, on_camera_frame or (lambda f: None)
            )
        self.time = 0.0
        self.metrics = RunMetrics(goals_total=len(scenario.goals))
        self.goal_index = 0
        self.goal_started_at = 0.0
        self.done = False  # all goals reached (loop_goals: never)
        self.mission_start: float | None = None  # simulated time the mission started
        self.plan = np.zeros((0, 2))
        self._cmd = (0.0, 0.0)
        self._cmd_time = -math.inf
        periods = {
            "scan": 1.0 / sensors.lidar_rate_hz,
            "odom": 1.0 / sensors.odom_rate_hz,
            "clock": 1.0 / clock_rate_hz,
            "status": 1.0 / status_rate_hz,
            "track": 0.05,
        }
        if self.camera is not None:
            periods["camera"] = 1.0 / sensors.camera_rate_hz
        self._periods = periods
        self._next = dict.fromkeys(periods, 0.0)
        self._events = list(scenario.events)
        self._last_xy = (s.x, s.y)
        self._robot_geoms = {self.index.robot_geom}
        self._person_geom_ids = {g for gs in self.index.person_geoms for g in gs}
        self._place_people()
        mujoco.mj_forward(self.model, self.data)
        if start:
            self.start_mission()

    def start_mission(self) -> None:
        """Start the clock of goals, events and metrics now (idempotent)."""
        if self.mission_start is not None:
            return
        self.mission_start = self.time
        self.metrics = RunMetrics(goals_total=len(self.scenario.goals))
        self.goal_started_at = self.time
        self._last_xy = self.pose[:2]

    @property
    def mission_time(self) -> float:
        """Simulated seconds since the mission started (0 before)."""
        return 0.0 if self.mission_start is None else self.time - self.mission_start

    # ---- state ------------------------------------------------------------------------------
    @property
    def pose(self) -> tuple[float, float, float]:
        """True (x, y, yaw) in the map frame."""
        q = self.data.qpos
        return (
            float(q[self.index.qpos_x]),
            float(q[self.index.qpos_y]),
            wrap_angle(float(q[self.index.qpos_yaw])),
        )

    @property
    def body_velocity(self) -> tuple[float, float]:
        """True (v forward m/s, w yaw rad/s)."""
        v = self.data.qvel
        yaw = self.pose[2]
        vx, vy = v[self.index.dof_x], v[self.index.dof_y]
        return float(vx * math.cos(yaw) + vy * math.sin(yaw)), float(v[self.index.dof_yaw])

    @property
    def goal(self) -> tuple[float, float]:
        return self.scenario.goals[self.goal_index]

    def grid_map(self, resolution: float = 0.05) -> GridMap:
        return rasterise(self.world, resolution)

    # ---- inputs -----------------------------------------------------------------------------
    def set_cmd_vel(self, v: float, w: float) -> None:
        """A Twist from the robot's navigation; held until `cmd_vel_timeout_s` passes without another."""
        self._cmd = clip_command(v, w, self.spec)
        self._cmd_time = self.time
        self.metrics.cmd_vel_received += 1

    def set_plan(self, points: np.ndarray) -> None:
        """The path the navigation follows, (N, 2) map-frame points; tracking error is measured to it."""
        self.plan = np.asarray(points, dtype=np.float64).reshape(-1, 2)

    # ---- stepping ---------------------------------------------------------------------------
    def _place_people(self) -> None:
        pos = self.crowd.positions()
        for slot, mocap in enumerate(self.index.person_mocap):
            if slot < len(pos):
                self.data.mocap_pos[mocap] = (pos[slot, 0], pos[slot, 1], 0.0)
            else:
                self.data.mocap_pos[mocap] = (0.0, 0.0, PARKED_Z)

    def step(self) -> StepResult:
        """Advance by CONTROL_DT; returns what fell due."""
        dt = CONTROL_DT
        self.crowd.step(dt, self.pose[:2])
        self._place_people()
        v, w = self._cmd if self.time - self._cmd_time <= self.scenario.cmd_vel_timeout_s else (0.0, 0.0)
        yaw = self.pose[2]
        ctrl = self.data.ctrl
        ctrl[0], ctrl[1], ctrl[2] = v * math.cos(yaw), v * math.sin(yaw), w
        mujoco.mj_step(self.model, self.data, nstep=self.nsub)
        self.time += dt
        vb, wb = self.body_velocity
        self.odometry.update(vb, wb, dt)
        x, y, _ = self.pose
        started = self.mission_start is not None
        if started:
            self.metrics.moved(math.hypot(x - self._last_xy[0], y - self._last_xy[1]))
            self.metrics.sim_time_s = self.mission_time
            self._count_contacts(x, y)
        self._last_xy = (x, y)
        due = []
        for name, period in self._periods.items():
            if self.time + 1e-9 >= self._next[name]:
                self._next[name] += period
                if self._next[name] <= self.time:  # fell behind (a stall): skip, don't burst
                    self._next[name] = self.time + period
                due.append(name)
        if "track" in due:
            if started:
                self.metrics.track(distance_to_polyline(x, y, self.plan))
            due.remove("track")
        goal_changed = started and self._check_goal(x, y)
        fired = []
        while started and self._events and self._events[0].at_s <= self.mission_time:
            event = self._events.pop(0)
            if isinstance(event, AddPeople):
                self.crowd.add(event.count, avoid=(x, y, 2.0))
            fired.append(event)
        return StepResult(due=due, events=fired, goal_changed=goal_changed)

    def _count_contacts(self, x: float, y: float) -> None:
        static_now, people_now = set(), set()
        for i in range(self.data.ncon):
            c = self.data.contact[i]
            g1, g2 = int(c.geom1), int(c.geom2)
            if self.index.robot_geom not in (g1, g2) or c.dist > 0:
                continue
            other = g2 if g1 == self.index.robot_geom else g1
            (people_now if other in self._person_geom_ids else static_now).add(other)
        self.metrics.contacts(self.mission_time, x, y, static_now, people_now)

    def _check_goal(self, x: float, y: float) -> bool:
        if self.done:
            return False
        gx, gy = self.goal
        if math.hypot(x - gx, y - gy) > self.scenario.goal_tolerance_m:
            return False
        self.metrics.goals_reached += 1
        self.metrics.goal_times_s.append(self.time - self.goal_started_at)
        self.goal_started_at = self.time
        if self.goal_index + 1 < len(self.scenario.goals):
            self.goal_index += 1
        elif self.scenario.loop_goals:
            self.goal_index = 0
        else:
            self.done = True
        self.plan = np.zeros((0, 2))  # the old plan no longer applies
        return True

    # ---- sensors ----------------------------------------------------------------------------
    def scan(self) -> np.ndarray:
        """(beams,) float32 LiDAR ranges (m, +inf = no return) from the current state."""
        mujoco.mj_kinematics(self.model, self.data)
        return self.lidar.scan(self.data, self.pose[2])

    def odom(self) -> tuple[float, float, float, float, float]:
        """(x, y, yaw, v, w) of wheel odometry in the odom frame (its origin: the start pose)."""
        o = self.odometry
        return o.x, o.y, o.yaw, o.v, o.w

    def request_camera(self, segment: bool = False) -> bool:
        """Ask the camera worker for a frame of the current state (rendered on its thread)."""
        if self.camera is None:
            return False
        mujoco.mj_kinematics(self.model, self.data)
        return self.camera.request(self.time, self.data, segment)

    def people_visible(self, max_range: float = 8.0) -> np.ndarray:
        """(K, 2) positions (robot frame: x forward, y left) of people the camera can see: inside its
        field of view, within max_range, torso not hidden behind the world (ground truth for perception)."""
        x, y, yaw = self.pose
        pos = self.crowd.positions()
        if pos.size == 0:
            return np.zeros((0, 2))
        mujoco.mj_kinematics(self.model, self.data)
        dx, dy = pos[:, 0] - x, pos[:, 1] - y
        fx, fy = math.cos(yaw), math.sin(yaw)
        rel = np.stack([dx * fx + dy * fy, -dx * fy + dy * fx], axis=1)  # (N, 2) robot frame
        aspect = self.camera_spec.width / self.camera_spec.height
        half_h = math.atan(math.tan(math.radians(self.spec.camera_fovy_deg) / 2) * aspect)
        out = []
        cam = np.array([x + fx * self.spec.radius, y + fy * self.spec.radius, self.spec.camera_height])
        geomid = np.zeros(1, dtype=np.int32)
        for i, (rx, ry) in enumerate(rel):
            dist = math.hypot(rx, ry)
            if rx <= 0.3 or dist > max_range or abs(math.atan2(ry, rx)) > half_h:
                continue
            target = np.array([pos[i, 0], pos[i, 1], 1.1])
            vec = target - cam
            mujoco.mj_ray(self.model, self.data, cam, vec, None, 1, self.index.robot_body, geomid, None)
            if int(geomid[0]) in self.index.person_geoms[i]:
                out.append((rx, ry))
        return np.array(out, dtype=np.float64).reshape(-1, 2)

    def close(self) -> None:
        """Stop the camera worker and free its renderer (explicitly: at interpreter exit it would fail)."""
        if self.camera is not None:
            self.camera.close()
            self.camera = None

    def __enter__(self) -> Simulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
