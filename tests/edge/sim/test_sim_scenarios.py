"""Scenario files: the bundled ones load, and a file with an error is rejected with its file and line."""

from __future__ import annotations

import pytest

from tether.edge.sim.scenario import ScenarioError, list_scenarios, load_scenario

GOOD = """\
name: t
start: {x: 1.5, y: 6.0}
goals:
  - [18.5, 6.0]
people:
  count: 2
"""


def test_bundled_scenarios_load():
    names = list_scenarios()
    assert {"nominal", "crowded", "contention", "power_drop"} <= set(names)
    assert load_scenario("crowded").people.count > load_scenario("nominal").people.count
    actions = [e.action for e in load_scenario("contention").events]
    assert actions == ["start_contention", "stop_contention"]
    drop = load_scenario("power_drop")
    assert drop.hardware_profile == "orin-agx-64:MAXN" and drop.events[0].mode == "15W"


def _write(tmp_path, text):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text, line, words",
    [
        (GOOD.replace("count: 2", "count: -3"), 6, "greater than or equal to 0"),
        (GOOD.replace("  - [18.5, 6.0]", "  - [18.5, 6.0]\n  - [5.0, 2.5]"), 5, "not free space"),
        (GOOD + "events:\n  - {at_s: 3, action: explode}\n", 8, "events.0"),
        (GOOD + "events:\n  - {at_s: 3, action: set_power_mode, mode: 15W}\n", 8, "hardware_profile"),
        (
            GOOD
            + "hardware_profile: orin-agx-64:MAXN\nevents:\n  - {at_s: 3, action: set_power_mode, mode: 9W}\n",
            9,
            "no power mode '9W'",
        ),
        (GOOD + "events:\n  - {at_s: 5, action: stop_contention}\n", 8, "before any start_contention"),
        (GOOD.replace("start: {x: 1.5, y: 6.0}", "start: {x: 1.5, y: 6.0, pitch: 3}"), 2, "pitch"),
        (GOOD.replace("count: 2", "count: 2: 3"), 6, "not valid YAML"),
    ],
)
def test_bad_scenario_is_rejected_with_its_line(tmp_path, text, line, words):
    path = _write(tmp_path, text)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert info.value.line == line, str(info.value)
    assert str(path) in str(info.value) and f":{line}:" in str(info.value)
    assert words in str(info.value)
