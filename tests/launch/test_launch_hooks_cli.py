"""Hooks from the `tether.launch_hooks` entry points, the `tether launch` command, and run_node."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from tether._cli_launch import register
from tether.launch import LaunchError, launch_file, load_hooks
from tether.launch.run_node import main as run_node_main

# A real installed distribution (a .dist-info folder on sys.path), so importlib.metadata finds its
# entry points exactly as it finds the edge side's cgroup hook. Its switch is its own launch argument
# (`test_placement`), so the edge hook (`hardware_profile`), if installed, stays off here.
_PLUGIN = """
from tether.launch import ProcessHook

CREATED = []


class Placer(ProcessHook):
    def __init__(self, profile):
        self.profile = profile
        self.started = []
        self.exited = []
        CREATED.append(self)

    def on_start(self, info, pid):
        self.started.append((info.label, info.kind, pid))

    def on_exit(self, info, pid, returncode):
        self.exited.append((info.label, pid, returncode))


def factory(launch_args):
    profile = launch_args.get("test_placement", "")
    if not profile:
        return None
    if ":" not in profile:
        raise ValueError(f"test_placement takes PLATFORM:MODE, but got {profile!r}")
    return Placer(profile)


def not_a_hook(launch_args):
    return object()
"""
_ENTRY_POINTS = """[tether.launch_hooks]
placer = launch_hook_plugin:factory

[tether.launch_hooks_test_broken]
missing = launch_hook_plugin_that_is_not_there:factory

[tether.launch_hooks_test_wrong]
wrong = launch_hook_plugin:not_a_hook
"""


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    root = tmp_path / "site"
    info = root / "launch_hook_plugin-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: launch-hook-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(_ENTRY_POINTS)
    (root / "launch_hook_plugin.py").write_text(_PLUGIN)
    monkeypatch.syspath_prepend(str(root))
    yield
    sys.modules.pop("launch_hook_plugin", None)


def test_entry_point_hook_switched_on_by_a_launch_argument(plugin, tmp_path, data_dir):
    path = tmp_path / "h.launch.yaml"
    path.write_text(
        "launch:\n- arg: {name: test_placement, default: ''}\n"
        f"- executable: {{cmd: '{sys.executable} {data_dir}/crash.py 0', name: once}}\n"
    )
    launch_file(path, {}, output=sys.stderr)
    assert sys.modules["launch_hook_plugin"].CREATED == []  # no profile: the factory declined

    summary = launch_file(path, {"test_placement": "orin-nano:15W"}, output=sys.stderr)
    (hook,) = sys.modules["launch_hook_plugin"].CREATED
    pid = summary.process("once-1").exits[0].pid
    assert hook.profile == "orin-nano:15W"
    assert hook.started == [("once-1", "executable", pid)]
    assert hook.exited == [("once-1", pid, 0)]

    with pytest.raises(LaunchError, match="hook 'placer' .* PLATFORM:MODE, but got 'orin'"):
        launch_file(path, {"test_placement": "orin"}, output=sys.stderr)


def test_broken_and_wrong_hook_plugins(plugin, capsys):
    assert load_hooks({}, group="tether.launch_hooks_test_broken") == []
    assert "hook 'missing' unavailable (ModuleNotFoundError" in capsys.readouterr().err
    with pytest.raises(LaunchError, match="returned object, not a ProcessHook"):
        load_hooks({}, group="tether.launch_hooks_test_wrong")


def cli() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.command()
    def other() -> None:  # a second command keeps `launch` a sub-command, as in `tether`
        """Placeholder."""

    return app


def test_cli_show_prints_the_description_and_runs_nothing(data_dir):
    result = CliRunner().invoke(
        cli(), ["launch", str(data_dir / "stop.launch.yaml"), "python:=/bin/false", "--show"]
    )
    assert result.exit_code == 0, result.output
    assert "python = '/bin/false' (required)" in result.stdout
    assert "- stubborn [executable] from " in result.stdout
    assert "process started" not in result.stdout


def test_cli_reports_launch_file_errors_with_exit_code_2(tmp_path):
    path = tmp_path / "bad.launch.yaml"
    path.write_text("launch:\n- executable:\n    cmd: ls\n    respwan: true\n")
    result = CliRunner().invoke(cli(), ["launch", str(path), "--no-router"])
    assert result.exit_code == 2
    assert "unknown key 'respwan' in executable at" in result.output
    assert "bad.launch.yaml:4; did you mean 'respawn'?" in result.output


def test_cli_exit_code_1_when_a_process_crashes(data_dir):
    result = CliRunner().invoke(
        cli(),
        [
            "launch",
            str(data_dir / "crash.launch.yaml"),
            f"python:={sys.executable}",
            "--no-router",
            "--no-hooks",
        ],
    )
    assert result.exit_code == 1, result.output
    assert "crashed: exit code 3" in result.stdout


def test_run_node_rejects_an_unknown_entry_point(capsys):
    assert run_node_main(["tether_demo.talkr"]) == 2
    assert "no entry point 'tether_demo.talkr' in group tether.nodes; did you mean 'tether_demo.talker'?" in (
        capsys.readouterr().err
    )
    assert run_node_main([]) == 2


def test_find_pkg_share_falls_back_to_the_repository():
    from tether.launch import find_pkg_share
    from tether.launch.packages import repo_root

    root = repo_root()
    assert find_pkg_share("tether_msgs", []) == root / "ros_ws" / "src" / "tether_msgs"
    assert (find_pkg_share("tether", []) / "launch" / "demo.launch.yaml").is_file()
    with pytest.raises(LaunchError, match="package 'no_such_pkg' not found"):
        find_pkg_share("no_such_pkg", [Path("/nonexistent")])
