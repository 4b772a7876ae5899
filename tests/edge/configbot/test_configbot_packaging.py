"""ConfigBot's executables are the same under `tether launch` (entry points) and `ros2 launch` (ament package
configbot_ros), and the robot's launch file starts it, switchable, with the bundled specification."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
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


def test_the_gp_sampler_warms_up_with_its_batched_optimiser():
    """The edge extra installs greenlet, so Optuna's GPSampler optimises its acquisition in one batch;
    without it Optuna warns when the optimiser loads (here, at warm-up) and each ask costs about twice
    the CPU. A fresh interpreter: the warning is printed once, when the module is first imported."""
    code = (
        "from tether.edge.configbot.tuner import gp_available, warm_up_sampler\n"
        "assert gp_available(), 'torch and scipy are installed by make'\n"
        "warm_up_sampler('gp')\n"
        "import sys; assert 'optuna._gp.batched_lbfgsb' in sys.modules\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    assert "greenlet" not in r.stderr, r.stderr
