"""The robot's executables are the same under `tether launch` (entry points) and `ros2 launch` (ament package)."""

from __future__ import annotations

import ast
import re
import xml.etree.ElementTree as ET
from importlib import metadata
from pathlib import Path

from tether.edge.robot.stack import LAUNCH_FILE
from tether.launch import parse_launch_file

PKG = Path(__file__).resolve().parents[3] / "ros_ws" / "src" / "tether_robot"


def test_ament_package_exposes_the_entry_points():
    src = (PKG / "setup.py").read_text()
    executables = ast.literal_eval(re.search(r"EXECUTABLES = (\{.*?\})", src, re.S).group(1))
    eps = {
        e.name.split(".", 1)[1]: e.value
        for e in metadata.entry_points(group="tether.nodes")
        if e.name.startswith("tether_robot.")
    }
    assert executables == eps
    assert {"sim", "scan_filter", "localization", "navigation", "perception", "mapping"} <= set(eps)
    assert ET.parse(PKG / "package.xml").getroot().findtext("name") == "tether_robot"
    assert "lib/tether_robot" in (PKG / "setup.cfg").read_text()  # where `ros2 run` looks


def test_launch_file_is_shared_and_resolves_every_node():
    assert (PKG / "launch" / "sim_robot.launch.yaml").resolve() == LAUNCH_FILE.resolve()
    desc = parse_launch_file(LAUNCH_FILE, {"scenario": "nominal", "configbot": "false"})
    robot = {
        p.node.exec: p.node.entry_point for p in desc.processes if p.node and p.node.pkg == "tether_robot"
    }
    assert set(robot) == {"sim", "scan_filter", "localization", "navigation", "perception", "mapping"}
    assert all(ep == f"tether_robot.{exe}" for exe, ep in robot.items())
