"""Scenarios (`edge/sim/scenarios/<name>.yaml`): the world, the robot's mission, and scripted changes over time.

A scenario is validated where it enters: field bounds by pydantic, then the checks that need
the world (start and goals must be free space) or the hardware profiles (a power mode must
exist); every error names the file and the line. Events fire at simulation time `at_s`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tether.edge.hardware import HardwareError, parse_profile_mode
from tether.edge.sim.world import WorldError, load_world
from tether.edge.yamlconfig import ConfigFileError, parse_yaml, validate_data

__all__ = [
    "AddPeople",
    "Scenario",
    "ScenarioError",
    "SCENARIOS_DIR",
    "SetPowerMode",
    "StartContention",
    "StopContention",
    "list_scenarios",
    "load_scenario",
    "scenario_path",
]

SCENARIOS_DIR = Path(__file__).resolve().parent / "scenarios"


class ScenarioError(ConfigFileError):
    """A scenario file breaks a rule; names the file and line. Not recoverable: fix the file."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StartContention(_Strict):
    """A background CPU-heavy job starts: not a robot node, not a knob anyone may turn."""

    action: Literal["start_contention"]
    at_s: float = Field(ge=0)
    workers_per_core: float = Field(2.0, gt=0, le=8, description="busy processes per core of this machine")


class StopContention(_Strict):
    action: Literal["stop_contention"]
    at_s: float = Field(ge=0)


class SetPowerMode(_Strict):
    """The platform switches power mode (nvpmodel -m), e.g. to one with fewer cores online."""

    action: Literal["set_power_mode"]
    at_s: float = Field(ge=0)
    mode: str = Field(min_length=1)


class AddPeople(_Strict):
    action: Literal["add_people"]
    at_s: float = Field(ge=0)
    count: int = Field(ge=1, le=50)


Event = Annotated[
    Union[StartContention, StopContention, SetPowerMode, AddPeople], Field(discriminator="action")
]


class Pose2D(_Strict):
    x: float
    y: float
    yaw: float = 0.0


class People(_Strict):
    count: int = Field(3, ge=0, le=50)
    speed_min_mps: float = Field(0.4, ge=0.0, le=3.0)
    speed_max_mps: float = Field(1.1, gt=0.0, le=3.0)

    @model_validator(mode="after")
    def _ordered(self) -> People:
        if self.speed_min_mps > self.speed_max_mps:
            raise ValueError(
                f"speed_min_mps <= speed_max_mps must hold, but got ({self.speed_min_mps}, {self.speed_max_mps})"
            )
        return self


class Sensors(_Strict):
    lidar_rate_hz: float = Field(40.0, gt=0, le=200)
    lidar_beams: int = Field(360, ge=8, le=4096)
    lidar_range_max_m: float = Field(12.0, gt=0.5, le=100)
    lidar_noise_m: float = Field(0.01, ge=0, le=0.5)
    camera_rate_hz: float = Field(5.0, ge=0, le=60, description="0 turns the camera off")
    camera_width: int = Field(160, ge=16, le=320)
    camera_height: int = Field(120, ge=12, le=240)
    odom_rate_hz: float = Field(50.0, gt=0, le=500)
    odom_slip: float = Field(0.02, ge=0, le=0.5)
    odom_radius_error: float = Field(0.005, ge=-0.2, le=0.2)


class Scenario(_Strict):
    name: str = Field(min_length=1)
    description: str = ""
    world: str = "office"
    seed: int = Field(0, ge=0)
    duration_s: float = Field(120.0, gt=0, le=86_400, description="simulated seconds a run lasts")
    start: Pose2D
    goals: list[tuple[float, float]] = Field(min_length=1)
    loop_goals: bool = True
    goal_tolerance_m: float = Field(0.35, gt=0.05, le=5.0)
    cmd_vel_timeout_s: float = Field(0.5, gt=0, le=10, description="the base stops without a fresh cmd_vel")
    people: People = People()
    sensors: Sensors = Sensors()
    hardware_profile: str | None = Field(
        None, description="NAME[:MODE] the scenario starts in, when it needs one"
    )
    events: list[Event] = []

    @property
    def max_people(self) -> int:
        return self.people.count + sum(e.count for e in self.events if isinstance(e, AddPeople))


def _check_semantics(s: Scenario, lines: dict[tuple, int], path: Path) -> None:
    """The checks that need the world or the hardware profiles."""

    def fail(loc: tuple, message: str) -> None:
        raise ScenarioError(path, lines.get(loc), message)

    try:
        world = load_world(s.world)
    except WorldError as exc:
        fail(("world",), str(exc))
    robot_radius = 0.22
    if not world.is_free(s.start.x, s.start.y, robot_radius):
        fail(
            ("start",),
            f"start ({s.start.x}, {s.start.y}) is not free space in world {world.name!r} for a "
            f"{robot_radius} m robot; move it away from walls and furniture",
        )
    for i, (x, y) in enumerate(s.goals):
        if not world.is_free(x, y, robot_radius):
            fail(
                ("goals", i),
                f"goal {i} ({x}, {y}) is not free space in world {world.name!r}; move it away "
                "from walls and furniture",
            )
    profile = None
    if s.hardware_profile:
        try:
            profile = parse_profile_mode(s.hardware_profile).profile
        except HardwareError as exc:
            fail(("hardware_profile",), str(exc))
    contention = False
    for i, e in enumerate(s.events):
        if isinstance(e, SetPowerMode):
            if profile is None:
                fail(
                    ("events", i),
                    "set_power_mode needs the scenario's hardware_profile (e.g. orin-agx-64:MAXN)",
                )
            try:
                profile.mode(e.mode)
            except HardwareError as exc:
                fail(("events", i, "mode"), str(exc))
        if isinstance(e, StartContention):
            contention = True
        if isinstance(e, StopContention) and not contention:
            fail(("events", i), "stop_contention comes before any start_contention")
        if e.at_s > s.duration_s:
            fail(
                ("events", i, "at_s"),
                f"at_s={e.at_s} is after the end of the run (duration_s={s.duration_s})",
            )
    times = [e.at_s for e in s.events]
    if times != sorted(times):
        fail(("events",), f"events must be in time order (at_s ascending), but got {times}")


def list_scenarios() -> list[str]:
    return sorted(p.stem for p in SCENARIOS_DIR.glob("*.yaml"))


def scenario_path(name: str | Path) -> Path:
    """A bundled scenario by name (`nominal`) or a path to a YAML file."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml"):
        return path
    path = SCENARIOS_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ScenarioError(
            path,
            None,
            f"unknown scenario {str(name)!r}; bundled: {', '.join(list_scenarios())}, or a .yaml path",
        )
    return path


def load_scenario(name: str | Path) -> Scenario:
    """Load and validate a scenario; errors (ScenarioError) name the file and line."""
    path = scenario_path(name)
    try:
        data, lines = parse_yaml(path)
        scenario = validate_data(Scenario, data, lines, path)
    except ScenarioError:
        raise
    except ConfigFileError as exc:
        raise ScenarioError(exc.path, exc.line, exc.message) from None
    _check_semantics(scenario, lines, path)
    return scenario
