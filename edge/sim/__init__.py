"""The simulated robot (MuJoCo): an indoor world with moving people, a differential-drive robot with
LiDAR, odometry and a camera, scenarios with scripted changes, and the bus node that publishes it all.

MuJoCo reads its OpenGL backend (MUJOCO_GL) when first imported, so the setting is exported
here, before any submodule imports mujoco: OSMesa on a machine without a GPU, EGL with one.
"""

import os as _os

from tether.settings import settings as _settings

_os.environ.setdefault("MUJOCO_GL", _settings().mujoco_gl)

from tether.edge.sim.scenario import Scenario, ScenarioError, list_scenarios, load_scenario  # noqa: E402
from tether.edge.sim.simulator import Simulator, StepResult  # noqa: E402
from tether.edge.sim.world import World, load_world  # noqa: E402

__all__ = [
    "Scenario",
    "ScenarioError",
    "Simulator",
    "StepResult",
    "World",
    "list_scenarios",
    "load_scenario",
    "load_world",
]
