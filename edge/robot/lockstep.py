"""The robot's software in one process, stepped in lock-step with the simulator, without the bus.

The same algorithm objects the nodes run (scan filter, particle filter, navigator), fed by
direct calls at the rates the nodes would run at; simulated time advances only when they are
done, so a run is deterministic and as fast as the CPU allows. For tests and quick studies
(`control_rate_hz` shows what a slower navigation loop does to tracking); the bus-connected
stack is `launch/sim_robot.launch.yaml`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tether.edge.robot.geometry import compose, invert
from tether.edge.robot.localization import LikelihoodField, ParticleFilter, ParticleFilterConfig
from tether.edge.robot.navigator import Navigator, NavigatorConfig
from tether.edge.robot.scan_filter import ScanFilter, ScanFilterConfig
from tether.edge.sim.scenario import Scenario
from tether.edge.sim.simulator import Simulator

__all__ = ["LockstepResult", "run_lockstep"]


@dataclass
class LockstepResult:
    metrics: dict
    localization_error_m: float  # mean distance between the estimate and the truth
    final_pose: tuple[float, float, float]


def run_lockstep(
    scenario: Scenario,
    duration_s: float,
    *,
    control_rate_hz: float = 20.0,
    localization: bool = True,
    nav_config: NavigatorConfig | None = None,
    pf_config: ParticleFilterConfig | None = None,
    stop_after_goals: int | None = None,
    latency_s: float = 0.0,
) -> LockstepResult:
    """Run `duration_s` simulated seconds (or until `stop_after_goals` goals are reached).

    `latency_s`: each command reaches the base this long after it was computed, as over the bus
    with a loaded CPU (sensing, transport and compute delays together).
    """
    with Simulator(scenario, camera=False) as sim:
        grid = sim.grid_map()
        nav = Navigator(grid, nav_config, seed=scenario.seed)
        scan_filter = ScanFilter(ScanFilterConfig())
        start = (scenario.start.x, scenario.start.y, scenario.start.yaw)
        pf = ParticleFilter(LikelihoodField(grid), pf_config or ParticleFilterConfig(), seed=scenario.seed)
        pf.initialise(start, std=(0.05, 0.05, 0.02))
        map_odom = start  # the odometry frame starts at the start pose
        spec = sim.lidar.spec
        angles = spec.angle_min + spec.angle_increment * np.arange(spec.beams)
        ranges = None
        next_control = 0.0
        loc_err = []
        pending: list[tuple[float, float, float]] = []  # (release time, v, w)
        while sim.time < duration_s:
            result = sim.step()
            ox, oy, oyaw, ov, ow = sim.odom()
            odom_pose = (ox, oy, oyaw)
            if "scan" in result.due:
                ranges = scan_filter.filter(sim.scan(), spec.angle_increment)
                if localization:
                    pf.predict(odom_pose)
                    pf.update(ranges, angles)
                    est, _ = pf.estimate()
                    map_odom = compose(est, invert(odom_pose))
                    tx, ty, _ = sim.pose
                    loc_err.append(float(np.hypot(est[0] - tx, est[1] - ty)))
            if sim.time + 1e-9 >= next_control:
                next_control += 1.0 / control_rate_hz
                pose_map = compose(map_odom, odom_pose)
                nav.set_goal(*sim.goal)
                nav.set_pose(pose_map)
                nav.velocity = (ov, ow)
                if ranges is not None:
                    nav.set_scan(ranges, angles, pose_map)
                v, w, changed = nav.step(sim.time)
                pending.append((sim.time + latency_s, v, w))
                if changed:
                    sim.set_plan(nav.plan)
            while pending and pending[0][0] <= sim.time + 1e-9:
                _, v, w = pending.pop(0)
                sim.set_cmd_vel(v, w)
            if stop_after_goals is not None and sim.metrics.goals_reached >= stop_after_goals:
                break
        return LockstepResult(
            metrics=sim.metrics.summary(),
            localization_error_m=float(np.mean(loc_err)) if loc_err else 0.0,
            final_pose=sim.pose,
        )
