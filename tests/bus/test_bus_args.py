"""ROS 2 command-line arguments and parameter files, as ros2 launch passes them."""

from __future__ import annotations

import pytest

from tether.bus.args import ArgumentError, load_params_file, parse_ros_args


def test_ros_args_are_parsed():
    a = parse_ros_args(
        ["--user", "x", "--ros-args", "-r", "__node:=lidar", "-r", "__ns:=/spot1", "-r", "scan:=scan_raw"]
        + ["-p", "rate:=10.5", "-p", "name:=front", "-p", "on:=true", "--", "tail"]
    )
    assert (a.node_name, a.namespace) == ("lidar", "/spot1")
    assert a.remaps == {"scan": "scan_raw"}
    assert a.params == {"rate": 10.5, "name": "front", "on": True}
    assert a.user_args == ["--user", "x", "tail"]


def test_bad_ros_args_say_the_fix():
    with pytest.raises(ArgumentError, match="NAME:=VALUE"):
        parse_ros_args(["--ros-args", "-p", "rate=10"])
    with pytest.raises(ArgumentError, match="no such file"):
        parse_ros_args(["--ros-args", "--params-file", "/nonexistent.yaml"])


def test_params_file_sections_and_wildcards(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text(
        "/**:\n  ros__parameters:\n    use_sim_time: true\n"
        "/spot1/lidar:\n  ros__parameters:\n    rate: 20\n    filter: {window: 5}\n"
        "other:\n  ros__parameters:\n    rate: 99\n"
    )
    assert load_params_file(f, "/spot1/lidar") == {"use_sim_time": True, "rate": 20, "filter.window": 5}
    a = parse_ros_args(["--ros-args", "--params-file", str(f), "-p", "rate:=30"])
    assert a.parameter_overrides("/spot1/lidar")["rate"] == 30  # -p wins over the file


def test_params_file_errors_name_file_and_line(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("lidar:\n  ros__parameters:\n    rate: [1, 2\n")
    with pytest.raises(ArgumentError, match=r"bad.yaml:\d+"):
        load_params_file(f, "/lidar")
    g = tmp_path / "nosection.yaml"
    g.write_text("lidar:\n  rate: 3\n")
    with pytest.raises(ArgumentError, match="ros__parameters"):
        load_params_file(g, "/lidar")
