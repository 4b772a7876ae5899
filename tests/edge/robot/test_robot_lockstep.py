"""The robot's algorithms closing the loop with the simulator (lock-step, no bus): it reaches its goal."""

from __future__ import annotations

from tether.edge.robot.lockstep import run_lockstep
from tether.edge.sim import load_scenario


def _short(goal, people=0):
    base = load_scenario("nominal")
    return base.model_copy(
        update={
            "goals": [goal],
            "loop_goals": False,
            "people": base.people.model_copy(update={"count": people}),
        }
    )


def test_robot_reaches_a_goal_through_a_door_in_nominal():
    # From the corridor's west end into the second room on the south side, through its door.
    result = run_lockstep(_short((7.5, 3.4), people=2), 30.0, stop_after_goals=1)
    m = result.metrics
    assert m["goals_reached"] == 1, m
    assert m["collisions"] == 0
    assert m["sim_time_s"] < 25.0  # ~8 m of path at up to 0.8 m/s
    assert m["tracking_mean_m"] < 0.3  # it followed its plan
    assert result.localization_error_m < 0.2  # the particle filter kept track of the truth
