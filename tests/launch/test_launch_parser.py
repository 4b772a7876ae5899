"""The ROS 2 YAML launch format: real launch files parsed into descriptions, and errors with file:line."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tether.launch import (
    LaunchError,
    LaunchFileError,
    ParamFile,
    ParamValues,
    parse_cli_args,
    parse_launch_file,
)
from tether.launch.packages import repo_root


def parse(path: Path, args: dict[str, str], prefix: Path, environ: dict[str, str] | None = None):
    return parse_launch_file(path, args, environ=environ or {}, ament_prefix_path=[prefix])


def by_name(desc):
    return {p.name: p for p in desc.processes}


def test_main_file_resolves_substitutions_groups_includes_and_params(data_dir, ament_prefix):
    desc = parse(data_dir / "main.launch.yaml", {"rate": "7"}, ament_prefix, {"TETHER_TEST_FRAME": "laser"})
    procs = by_name(desc)
    assert list(procs) == [
        "driver",
        "real_driver",
        "nested",
        "inner_echo",
        "sub_driver",
        "rel",
        "sub_echo",
        "outer_echo",
    ]

    driver = procs["driver"]
    node = driver.node
    assert (node.pkg, node.exec, node.name, node.namespace) == ("fake_robot", "driver", "driver", "/robot1")
    # No tether entry point: the ament prefix's lib/<pkg>/<exec>, then the node's own `args`.
    assert driver.command == (str(ament_prefix / "lib" / "fake_robot" / "driver"), "--verbose")
    assert node.entry_point is None
    assert node.remaps == (("scan", "robot1_scan"), ("/tf", "tf"))
    # `from:` file (via $(find-pkg-share) from the ament index), then the launch file's own values.
    file_src, values = node.params
    assert file_src == ParamFile(ament_prefix / "share" / "fake_robot" / "config" / "driver.yaml")
    assert isinstance(values, ParamValues)
    assert values.values == {
        "rate": 7,
        "frame": "laser",
        "limits.max_speed": 1.5,
        "limits.enabled": True,
        "gains": [1, 2, 3],
    }
    assert values.as_ros_parameters() == {
        "/**": {
            "ros__parameters": {
                "rate": 7,
                "frame": "laser",
                "limits": {"max_speed": 1.5, "enabled": True},
                "gains": [1, 2, 3],
            }
        }
    }
    assert driver.env == {"TETHER_TEST_MODE": "on"}
    assert driver.location.line == 11

    # `unless: false` kept real_driver; `if: false` dropped sim_driver.
    assert "sim_driver" not in procs
    # Groups: a relative push-ros-namespace nests, `let` inside a scoped group shadows `robot`.
    assert procs["nested"].node.namespace == "/fleet/inner"
    assert procs["inner_echo"].command == ("echo", "inner")
    assert procs["inner_echo"].output == "log"
    # Include: args evaluated in the includer's scope, namespace inherited, absolute namespace kept.
    assert procs["sub_echo"].command == ("echo", "inner-sub", "quiet")
    assert procs["sub_driver"].node.namespace == "/abs/ns"
    assert procs["rel"].node.namespace == "/fleet"  # labelled by exec_name
    assert procs["rel"].node.name == "rel_driver"
    assert procs["sub_echo"].location.file.name == "sub.launch.yaml"
    # After the group the outer scope is back: robot1, and $(eval) computed 7 * 2.
    outer = procs["outer_echo"]
    assert outer.command == ("echo", "robot1", "14")
    assert outer.respawn and outer.respawn_delay == 0.5
    assert outer.env == {"TETHER_TEST_MODE": "on", "EXTRA": "1"}

    assert dict(desc.launch_args) == {
        "rate": "7",
        "robot": "robot1",
        "use_sim": "false",
        "topic": "robot1_scan",
    }
    assert [(a.name, a.value, a.default) for a in desc.arguments] == [
        ("robot", "robot1", "robot1"),
        ("use_sim", "false", "false"),
        ("rate", "7", None),
        ("who", "inner-sub", None),
        ("mode", "quiet", "quiet"),
    ]
    assert desc.included == (data_dir / "sub.launch.yaml",)
    assert "real_driver [node]" in desc.describe()


def test_conditions_follow_arguments(data_dir, ament_prefix):
    desc = parse(data_dir / "main.launch.yaml", {"rate": "1", "use_sim": "True", "robot": "r2"}, ament_prefix)
    procs = by_name(desc)
    assert "sim_driver" in procs and "real_driver" not in procs
    assert procs["driver"].node.namespace == "/r2"
    assert procs["driver"].node.params[1].values["frame"] == "base_link"  # $(env X default) with X unset


def test_demo_launch_file_through_find_pkg_share_tether(data_dir, ament_prefix):
    desc = parse(data_dir / "demo_include.launch.yaml", {}, ament_prefix)
    assert desc.included == (repo_root() / "launch" / "demo.launch.yaml",)
    (talker,) = desc.processes  # listener:=false
    assert talker.node.fqn == "/site/robot7/talker"
    assert talker.node.entry_point == "tether_demo.talker"
    assert talker.command == (sys.executable, "-m", "tether.launch.run_node", "tether_demo.talker")
    assert talker.node.params == (ParamValues({"rate": 2.5}),)


def test_ros_argv_of_a_node(data_dir, ament_prefix, tmp_path):
    desc = parse(data_dir / "driver.launch.yaml", {}, ament_prefix)
    node = desc.processes[0].node
    argv = node.ros_argv([Path("/a.yaml"), Path("/b.yaml")])
    assert argv == [
        "--ros-args",
        "-r",
        "__node:=drv",
        "-r",
        "__ns:=/robot",
        "-r",
        "scan:=front_scan",
        "--params-file",
        "/a.yaml",
        "--params-file",
        "/b.yaml",
    ]


def test_cli_args():
    assert parse_cli_args(["rate:=10", "ns:=/a", "empty:="]) == {"rate": "10", "ns": "/a", "empty": ""}
    with pytest.raises(LaunchError, match="NAME:=VALUE, but got 'rate=10'"):
        parse_cli_args(["rate=10"])


# -- errors: each names the file, the line and the fix ----------------------------------------------


def write(tmp_path: Path, text: str, name: str = "x.launch.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(path: Path, args: dict[str, str] | None = None, prefix: Path | None = None) -> LaunchFileError:
    with pytest.raises(LaunchFileError) as info:
        parse_launch_file(path, args or {}, environ={}, ament_prefix_path=[prefix] if prefix else [])
    return info.value


def test_unknown_key_names_line_and_suggestion(tmp_path, ament_prefix):
    path = write(tmp_path, "launch:\n- node:\n    pkg: fake_robot\n    exec: driver\n    nmae: x\n")
    err = error_of(path, prefix=ament_prefix)
    assert (err.file, err.line) == (path, 5)
    assert str(err).startswith("unknown key 'nmae' in node at ")
    assert str(err).endswith("x.launch.yaml:5; did you mean 'name'?")


def test_required_argument_says_how_to_pass_it(tmp_path):
    path = write(tmp_path, "launch:\n- arg: {name: foo, description: needed}\n")
    err = error_of(path)
    assert err.line == 2
    assert "argument 'foo' has no default and was not given" in str(err)
    assert str(err).endswith("pass foo:=VALUE")


def test_required_argument_of_an_include_points_at_the_include(tmp_path):
    write(tmp_path, "launch:\n- arg: {name: who}\n", "inner.launch.yaml")
    path = write(tmp_path, "launch:\n- let: {name: a, value: b}\n- include: {file: inner.launch.yaml}\n")
    err = error_of(path)
    assert err.file.name == "inner.launch.yaml" and err.line == 2
    assert f"the include's arg list at {path}:3" in str(err)


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (
            "launch:\n- arg: {name: a, default: x}\n- let: {name: b, value: $(var c)}\n",
            3,
            "launch configuration 'c' is not set",
        ),
        (
            "launch:\n- executable: {cmd: ls, if: maybe}\n",
            2,
            "if must be 'true' or 'false' (or 1/0), but got 'maybe'",
        ),
        ("launch:\n- nodes: {pkg: a, exec: b}\n", 2, "unknown entity 'nodes'"),
        ("launch:\n- executable:\n    cmd: ls\n    output: screan\n", 4, "did you mean 'screen'?"),
        (
            "launch:\n- executable: {cmd: ls, respawn_delay: -1}\n",
            2,
            "respawn_delay must be >= 0, but got -1",
        ),
        ("launch:\n- executable: {cmd: '$(envv HOME)'}\n", 2, "did you mean 'env'?"),
        (
            "launch:\n- executable: {cmd: '$(env NOPE_NOT_SET)'}\n",
            2,
            "give a default: $(env NOPE_NOT_SET DEFAULT)",
        ),
        ("launch:\n- executable: {cmd: '$(var x'}\n", 2, "is not closed with ')'"),
        ("launch:\n- include: {file: missing.launch.yaml}\n", 2, "file 'missing.launch.yaml' not found"),
        ("launch:\n- executable:\n    cmd: ls\n    name: a: b\n", 4, "not valid YAML: mapping values"),
        ("launch:\n- executable: {cmd: ls, name: a, name: b}\n", 2, "duplicate key 'name'"),
        (
            "launch:\n- group: {children: [{push-ros-namespace: {namespace: 9bad}}]}\n",
            2,
            "namespace '/9bad' is not a valid ROS 2 namespace",
        ),
        ("nodes:\n- executable: {cmd: ls}\n", 1, "root must be `launch:`"),
        (
            "launch:\n- node: {pkg: nowhere_pkg, exec: nothing_here}\n",
            2,
            "no executable for node pkg='nowhere_pkg' exec='nothing_here'",
        ),
        (
            "launch:\n- node: {pkg: tether_demo, exec: talker, param: [{name: a}]}\n",
            2,
            "each param item is {name: N, value: V}",
        ),
    ],
)
def test_errors_name_file_and_line(tmp_path, text, line, message):
    err = error_of(write(tmp_path, text))
    assert err.line == line, str(err)
    assert message in str(err)
    assert f"x.launch.yaml:{line}" in str(err)


def test_include_cycle_is_an_error(tmp_path):
    write(tmp_path, "launch:\n- include: {file: b.launch.yaml}\n", "a.launch.yaml")
    write(tmp_path, "launch:\n- include: {file: a.launch.yaml}\n", "b.launch.yaml")
    err = error_of(tmp_path / "a.launch.yaml")
    assert "include cycle" in str(err) and "a.launch.yaml -> " in str(err)


def test_misspelt_command_line_argument_is_warned_and_kept_for_hooks(data_dir, ament_prefix):
    desc = parse(data_dir / "main.launch.yaml", {"rate": "1", "rat": "2"}, ament_prefix)
    (warning,) = desc.warnings
    assert "'rat' is neither declared nor read by" in warning and warning.endswith("did you mean 'rate'?")
    assert desc.launch_args["rat"] == "2"  # hooks (e.g. hardware_profile) read such arguments
    assert "warning: launch argument 'rat'" in desc.describe()


def test_find_pkg_share_of_an_unknown_package(tmp_path, ament_prefix):
    path = write(tmp_path, "launch:\n- let: {name: d, value: $(find-pkg-share not_a_pkg)}\n")
    err = error_of(path, prefix=ament_prefix)
    assert err.line == 2 and "package 'not_a_pkg' not found" in str(err) and "AMENT_PREFIX_PATH" in str(err)
