"""Fixtures for the launcher tests: the fixture folder and a real ament install prefix on disk.

The prefix is laid out as colcon installs a ROS 2 package (ament index marker, share folder,
lib/<pkg>/<exec>), with a Python script as the node executable, since ROS 2 is not installed here.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"

# The fake node prints its arguments and the content of every parameters file it is given.
_DRIVER = """#!{python}
import sys
args = sys.argv[1:]
print("argv", " ".join(args), flush=True)
for i, arg in enumerate(args):
    if arg == "--params-file":
        with open(args[i + 1]) as f:
            print("params-file", args[i + 1], f.read().replace("\\n", " | "), flush=True)
"""


@pytest.fixture
def data_dir() -> Path:
    return DATA


@pytest.fixture
def ament_prefix(tmp_path: Path) -> Path:
    """An install prefix holding package `fake_robot`: share/fake_robot/config/driver.yaml and lib/fake_robot/driver."""
    prefix = tmp_path / "install"
    index = prefix / "share" / "ament_index" / "resource_index" / "packages"
    index.mkdir(parents=True)
    (index / "fake_robot").write_text("")
    config = prefix / "share" / "fake_robot" / "config"
    config.mkdir(parents=True)
    (config / "driver.yaml").write_text("/**:\n  ros__parameters:\n    rate: 5.0\n    device: /dev/ttyUSB0\n")
    exe = prefix / "lib" / "fake_robot" / "driver"
    exe.parent.mkdir(parents=True)
    exe.write_text(_DRIVER.format(python=sys.executable))
    exe.chmod(0o755)
    return prefix
