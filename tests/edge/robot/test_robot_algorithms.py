"""The robot's algorithms on their own: scan filter, particle filter, planner, controller, mapping."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tether.edge.robot.controller import ControllerConfig, LocalController
from tether.edge.robot.localization import LikelihoodField, ParticleFilter, ParticleFilterConfig
from tether.edge.robot.mapping import MappingConfig, OccupancyMapper
from tether.edge.robot.planner import Costmap, PlannerConfig, plan_path
from tether.edge.robot.scan_filter import ScanFilter, ScanFilterConfig
from tether.edge.sim.occupancy import rasterise
from tether.edge.sim.world import load_world


@pytest.fixture(scope="module")
def grid():
    return rasterise(load_world("office"), 0.05)


def _scan_at(world, pose, beams=360, max_range=12.0):
    angles = -math.pi + 2 * math.pi / beams * np.arange(beams)
    ranges = np.array([world.ray_distance(pose[0], pose[1], pose[2] + a, max_range, 0.3) for a in angles])
    ranges[ranges >= max_range] = np.inf
    return ranges.astype(np.float32), angles


def test_scan_filter_removes_outliers_and_keeps_walls():
    r = np.full(360, 2.0, dtype=np.float32)
    r[100] = 0.5  # a speck of dust
    r[200] = np.nan
    r[300] = 0.05  # inside the robot
    out = ScanFilter(ScanFilterConfig(window=5)).filter(r, 2 * math.pi / 360)
    assert out[100] == pytest.approx(2.0)
    assert np.isinf(out[200]) and np.isinf(out[300])
    assert np.allclose(out[np.r_[0:99, 102:199, 202:299, 302:360]], 2.0)
    with pytest.raises(ValueError, match="odd"):
        ScanFilterConfig(window=4)


def test_particle_filter_converges_from_a_rough_guess(grid):
    world = load_world("office")
    truth = (12.0, 6.2, 0.3)
    pf = ParticleFilter(LikelihoodField(grid), ParticleFilterConfig(num_particles=800), seed=1)
    pf.initialise((12.4, 5.9, 0.15), std=(0.3, 0.3, 0.15))
    ranges, angles = _scan_at(world, truth)
    for _ in range(15):
        pf.predict((0.0, 0.0, 0.0))  # standing still
        pf.update(ranges, angles)
    (x, y, yaw), var = pf.estimate()
    assert math.hypot(x - truth[0], y - truth[1]) < 0.1
    assert abs(yaw - truth[2]) < 0.05
    assert var[0] < 0.01


def test_planner_finds_a_path_through_the_door_clear_of_walls(grid):
    cm = Costmap(grid, PlannerConfig())
    path = plan_path(cm, (1.5, 6.0), (12.5, 3.4))
    assert len(path) > 10
    assert np.allclose(path[0], (1.5, 6.0)) and np.allclose(path[-1], (12.5, 3.4))
    rows = ((path[:, 1] - cm.origin_y) // cm.resolution).astype(int)
    cols = ((path[:, 0] - cm.origin_x) // cm.resolution).astype(int)
    assert np.all(np.isfinite(cm.cost[rows, cols]))  # never closer to a wall than the robot's radius
    # It goes through the door at x = 12.5 in the wall y = 5.
    crossing = path[np.argmin(np.abs(path[:, 1] - 5.0))]
    assert abs(crossing[0] - 12.5) < 0.5
    assert len(plan_path(cm, (1.5, 6.0), (30.0, 30.0))) == 0  # outside the map: no path


def test_controller_drives_along_the_plan_and_avoids_an_obstacle():
    plan = np.column_stack([np.linspace(0, 6, 61), np.zeros(61)])
    ctl = LocalController(ControllerConfig(num_samples=400), seed=0)
    v, w, info = ctl.compute((0.0, 0.0, 0.0), (0.5, 0.0), plan, np.zeros((0, 2)))
    assert v > 0.4 and abs(w) < 0.3 and info["reason"] == "ok"
    # A person 0.9 m ahead on the plan: the chosen arc keeps the robot off them.
    person = np.array([[0.9 + 0.1 * math.cos(a), 0.1 * math.sin(a)] for a in np.linspace(0, 2 * math.pi, 12)])
    v2, w2, info2 = ctl.compute((0.0, 0.0, 0.0), (0.5, 0.0), plan, person)
    traj = ctl.rollout((0.0, 0.0, 0.0), np.array([v2]), np.array([w2]))[0]
    clearance = np.min(np.hypot(traj[:, None, 0] - person[None, :, 0], traj[:, None, 1] - person[None, :, 1]))
    assert clearance > ctl.config.robot_radius, (v2, w2, info2)


def test_mapping_marks_walls_occupied_and_the_corridor_free():
    world = load_world("office")
    mapper = OccupancyMapper(MappingConfig(resolution=0.1))
    pose = (5.55, 6.0, 0.0)  # mid-cell, so the beam straight up ends inside one cell (no door above)
    ranges, angles = _scan_at(world, pose, max_range=8.0)
    for _ in range(3):
        mapper.update(pose, ranges, angles)
    g = mapper.grid()
    r, c = g.to_cell(np.array([5.55, 7.05]), np.array([6.97, 6.0]))
    assert g.data[r[0], c[0]] > 50  # the corridor's north wall
    assert 0 <= g.data[r[1], c[1]] < 50  # free corridor ahead
