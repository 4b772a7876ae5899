"""ConfigBot's executables are the same under `tether launch` (entry points) and `ros2 launch` (ament package
configbot_ros), and the robot's launch file starts it, switchable, with the bundled specification."""

from __future__ import annotations

import ast
import re
import xml.etree.ElementTree as ET
from importlib import metadata
from pathlib import Path

from tether.edge.configbot.spec import load_spec
from tether.launch import parse_launch_file

ROOT = Path(__file__).resolve().parents[3]
PKG = ROOT / "ros_ws" / "src" / "configbot_ros"


def test_ament_package_exposes_the_entry_points():
    src = (PKG / "setup.py").read_text()
    executables = ast.literal_eval(re.search(r"EXECUTABLES = (\{.*?\})", src, re.S).group(1))
    eps = {
        e.name.split(".", 1)[1]: e.value
        for e in metadata.entry_points(group="tether.nodes")
        if e.name.startswith("configbot_ros.")
    }
    assert executables == eps and "configbot" in eps
    assert ET.parse(PKG / "package.xml").getroot().findtext("name") == "configbot_ros"
    assert "lib/configbot_ros" in (PKG / "setup.cfg").read_text()


def test_ros2_launch_file_runs_configbot_on_rclpy():
    desc = parse_launch_file(PKG / "launch" / "configbot.launch.yaml", {"spec": "sim_robot"})
    (proc,) = desc.processes
    assert proc.node.entry_point == "configbot_ros.configbot"
    assert proc.env["TETHER_TRANSPORT"] == "rclpy"
    assert _params(proc)["spec"] == "sim_robot"


def test_robot_launch_file_starts_configbot_with_the_bundled_spec():
    launch = ROOT / "launch" / "sim_robot.launch.yaml"
    on = parse_launch_file(launch, {"scenario": "nominal", "stack": "robot7"})
    (cb,) = [p for p in on.processes if p.node and p.node.pkg == "configbot_ros"]
    assert cb.node.entry_point == "configbot_ros.configbot"
    params = _params(cb)
    assert load_spec(params["spec"]).name == "sim_robot" and params["stack"] == "robot7"
    off = parse_launch_file(launch, {"scenario": "nominal", "configbot": "false"})
    assert not [p for p in off.processes if p.node and p.node.pkg == "configbot_ros"]
    # The hardware-profile emulation leaves ConfigBot (and the world) out of the robot's CPU quota.
    assert on.launch_args["hardware_profile_exclude"] == "sim,configbot"


def _params(proc) -> dict:
    out: dict = {}
    for p in proc.node.params:
        out.update(p.values)
    return out
