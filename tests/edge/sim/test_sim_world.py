"""The simulated world and robot: LiDAR against the world's geometry, the map, odometry, contacts, camera."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tether.edge.sim import Simulator, load_scenario
from tether.edge.sim.occupancy import rasterise


def _scenario(**changes):
    base = load_scenario("nominal")
    people = base.people.model_copy(update={"count": changes.pop("people", 0)})
    return base.model_copy(update={"people": people, **changes})


def _place(sim: Simulator, x: float, y: float, yaw: float) -> None:
    q = sim.data.qpos
    q[sim.index.qpos_x], q[sim.index.qpos_y], q[sim.index.qpos_yaw] = x, y, yaw


@pytest.mark.parametrize(
    "pose", [(1.5, 6.0, 0.0), (7.5, 3.0, 1.2), (16.0, 9.0, -2.5), (10.0, 6.3, math.pi / 2)]
)
def test_lidar_ranges_agree_with_world_geometry(pose):
    with Simulator(_scenario(), camera=False) as sim:
        _place(sim, *pose)
        ranges = sim.scan().astype(np.float64)
        spec = sim.lidar.spec
        angles = spec.angle_min + spec.angle_increment * np.arange(spec.beams) + pose[2]
        # The analytic answer: a slab test against the world's boxes, at the LiDAR's height.
        truth = np.array(
            [sim.world.ray_distance(pose[0], pose[1], a, spec.range_max, spec.range_min) for a in angles]
        )
        near = truth < spec.range_max - 0.1
        assert near.sum() > 300  # indoors, almost every beam hits something
        err = np.abs(ranges[near] - truth[near])
        # Gaussian noise of 1 cm: beyond 5 cm only where a beam grazes a corner.
        assert np.mean(err < 0.05) > 0.97, np.sort(err)[-10:]
        assert np.median(err) < 0.015
        assert np.all(
            np.isinf(ranges[truth >= spec.range_max])
            | (ranges[truth >= spec.range_max] > spec.range_max - 0.2)
        )


def test_lidar_sees_a_person_and_not_the_robot():
    with Simulator(_scenario(people=1), camera=False) as sim:
        _place(sim, 1.5, 6.0, 0.0)
        sim.crowd.walkers[0].x, sim.crowd.walkers[0].y = 4.0, 6.0  # 2.5 m ahead, in the corridor
        sim._place_people()
        ranges = sim.scan()
        ahead = ranges[sim.lidar.spec.beams // 2]  # beam 180 looks along +x (angle_min = -pi)
        assert (
            2.5 - 0.25 < ahead < 2.5 - 0.05
        )  # the legs' capsule (r = 0.13 m) in front of the person's centre
        assert np.all(ranges[np.isfinite(ranges)] > sim.spec.radius)  # never the robot's own body


def test_map_is_rasterised_from_the_walls():
    world = load_scenario("nominal")
    from tether.edge.sim.world import load_world

    w = load_world(world.world)
    grid = rasterise(w, 0.05)
    occ = grid.occupied()
    r, c = grid.to_cell(np.array([5.0, 10.0, 1.5, 2.5]), np.array([2.0, 6.0, 6.0, 5.0]))
    assert occ[r[0], c[0]]  # the divider wall at x = 5
    assert not occ[r[1], c[1]] and not occ[r[2], c[2]]  # the corridor
    assert not occ[r[3], c[3]]  # the door at x = 2.5 in the wall y = 5
    assert grid.data.min() == -1  # outside the shell is unknown


def test_robot_follows_cmd_vel_and_odometry_drifts_a_little():
    with Simulator(_scenario(), camera=False) as sim:
        x0, y0, _ = sim.pose
        while sim.time < 3.0:
            sim.set_cmd_vel(0.6, 0.0)
            sim.step()
        x, y, yaw = sim.pose
        assert (
            1.5 < x - x0 < 1.9 and abs(y - y0) < 0.05 and abs(yaw) < 0.05
        )  # 0.6 m/s for 3 s, after a short ramp
        ox, oy, _, ov, _ = sim.odom()  # odom frame starts at the start pose, facing +x here
        err = math.hypot(ox - (x - x0), oy - (y - y0))
        assert 0.0 < err < 0.1  # noisy encoders: not exact, not far off
        assert ov == pytest.approx(0.6, abs=0.1)
        # Without a fresh command the base stops after the timeout.
        while sim.time < 4.5:
            sim.step()
        assert abs(sim.body_velocity[0]) < 0.05


def test_driving_into_a_wall_counts_one_collision():
    with Simulator(_scenario(), camera=False) as sim:
        _place(sim, 1.5, 6.0, math.pi / 2)  # facing the corridor's north wall, 0.9 m away
        while sim.time < 3.0:
            sim.set_cmd_vel(0.5, 0.0)
            sim.step()
        assert sim.metrics.collisions == 1
        assert sim.pose[1] < 7.0 - 0.05 - sim.spec.radius + 0.03  # the wall held


def test_camera_renders_and_people_ground_truth_matches_segmentation():
    frames = []
    with Simulator(_scenario(people=1), on_camera_frame=frames.append) as sim:
        _place(sim, 1.5, 6.0, 0.0)
        sim.crowd.walkers[0].x, sim.crowd.walkers[0].y = 5.0, 6.3
        sim._place_people()
        visible = sim.people_visible()
        assert sim.request_camera(segment=True)
        sim.camera.close()  # joins the worker: the frame is delivered
    (frame,) = frames
    assert frame.rgb.shape == (120, 160, 3) and frame.rgb.std() > 10
    assert (frame.people == 0).sum() > 100  # the person's pixels
    assert visible.shape == (1, 2) and visible[0, 0] == pytest.approx(3.5, abs=0.05) and visible[0, 1] > 0
