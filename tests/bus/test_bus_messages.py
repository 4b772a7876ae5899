"""CDR round trips of every message type tether defines or serves, and decoding errors."""

from __future__ import annotations

import numpy as np
import pytest

from tether.bus.messages import (
    MessageError,
    default_message,
    deserialize,
    get_srv_type,
    get_type,
    message_from_dict,
    message_to_dict,
    serialize,
    typestore,
)

OWN = sorted(n for n in typestore.types if n.startswith("tether_msgs/"))
SERVICES = sorted(n for n in typestore.types if "/srv/" in n)


def test_own_types_are_registered():
    assert {"tether_msgs/msg/Metric", "tether_msgs/msg/Telemetry", "tether_msgs/msg/NodeStatus"} <= set(OWN)


@pytest.mark.parametrize("name", OWN + SERVICES + ["sensor_msgs/msg/LaserScan", "nav_msgs/msg/Odometry"])
def test_cdr_round_trip_of_defaults(name):
    msg = default_message(name)
    data = serialize(msg, name)
    assert data[:4] == b"\x00\x01\x00\x00"  # CDR little-endian encapsulation header
    back = deserialize(data, name)
    assert serialize(back, name) == data


def test_telemetry_round_trip_keeps_values():
    Telemetry, Metric = get_type("tether_msgs/msg/Telemetry"), get_type("tether_msgs/msg/Metric")
    msg = default_message("tether_msgs/msg/Telemetry")
    msg.node, msg.pid = "lidar", 42
    msg.metrics = [Metric(name="rate.scan", value=39.5), Metric(name="cpu.percent", value=12.0)]
    back = deserialize(serialize(msg), "tether_msgs/msg/Telemetry")
    assert isinstance(back, Telemetry)
    assert (back.node, back.pid) == ("lidar", 42)
    assert [(m.name, m.value) for m in back.metrics] == [("rate.scan", 39.5), ("cpu.percent", 12.0)]


def test_service_request_round_trip():
    st = get_srv_type("rcl_interfaces/srv/GetParameters")
    back = deserialize(serialize(st.Request(names=["a", "b.c"]), st.request_name), st.request_name)
    assert back.names == ["a", "b.c"]


def test_dict_conversion_both_ways():
    msg = message_from_dict("geometry_msgs/msg/Twist", {"linear": {"x": 0.5}, "angular": {"z": -1}})
    assert msg.linear.x == 0.5 and msg.angular.z == -1.0
    assert message_to_dict(msg)["linear"] == {"x": 0.5, "y": 0.0, "z": 0.0}
    scan = message_from_dict("sensor_msgs/msg/LaserScan", {"ranges": [1.0, 2.0]})
    assert scan.ranges.dtype == np.float32 and scan.ranges.tolist() == [1.0, 2.0]


def test_errors_name_the_problem():
    with pytest.raises(MessageError, match="unknown message type"):
        get_type("nope_msgs/msg/Nothing")
    with pytest.raises(MessageError, match="has no field 'dta'"):
        message_from_dict("std_msgs/msg/String", {"dta": "x"})
    with pytest.raises(MessageError, match="does not decode as std_msgs/msg/String"):
        deserialize(b"\x00\x01\x00\x00\xff\xff\xff\x7f", "std_msgs/msg/String")
