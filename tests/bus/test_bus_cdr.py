"""The compiled CDR codecs: byte-for-byte rosbags' CDR for every type, safe buffer reuse, bad input."""

from __future__ import annotations

import random
import time

import numpy as np
import pytest

from tether.bus import Node, QoSProfile, get_type, spin_in_background
from tether.bus.cdr import _BASE, CdrError, compile_codec
from tether.bus.messages import MessageError, codec, default_message, deserialize, serialize, typestore

ALL = sorted(typestore.fielddefs)


def _prim(rng: random.Random, base: str):
    if base == "bool":
        return rng.random() < 0.5
    if base.startswith("float"):
        return rng.uniform(-1e3, 1e3)
    info = np.iinfo(np.dtype(_BASE[base][2]))
    return rng.randint(int(info.min), int(info.max))


def _value(rng: random.Random, desc, depth: int):
    kind = desc[0]
    if kind == 2:
        return _message(rng, desc[1], depth + 1)
    if kind == 1:
        if desc[1][0] == "string":  # multi-byte UTF-8 too: lengths are in bytes, not characters
            return "".join(rng.choice("ab\u00e9\u20ac") for _ in range(rng.randint(0, 7)))
        return _prim(rng, desc[1][0])
    sub, length = desc[1]
    n = length if kind == 3 else rng.randint(0, 3 if depth < 2 else 1)
    if sub[0] == 1 and sub[1][0] in _BASE:
        return np.array([_prim(rng, sub[1][0]) for _ in range(n)], dtype=_BASE[sub[1][0]][2])
    if sub[0] == 1:
        return [_value(rng, sub, depth) for _ in range(n)]
    return [_message(rng, sub[1], depth + 1) for _ in range(n)]


def _message(rng: random.Random, name: str, depth: int = 0):
    msgdef = typestore.get_msgdef(name)
    return msgdef.cls(*[_value(rng, d, depth) for _, d in msgdef.fields])


def test_every_type_encodes_exactly_as_rosbags_and_decodes_back():
    rng = random.Random(7)
    compiled = 0
    for name in ALL:
        c = compile_codec(name, typestore)
        if c is None:
            continue
        compiled += 1
        for _ in range(3):
            msg = _message(rng, name)
            want = bytes(typestore.serialize_cdr(msg, name))
            assert bytes(c.encode(msg)) == want, name
            back = c.decode(want)
            assert bytes(typestore.serialize_cdr(back, name)) == want, name
    assert compiled == len(ALL)  # no type of the store needs the rosbags fallback today


def test_a_reused_dirty_buffer_gives_the_same_bytes():
    # Padding and string terminators are written, not left to a zeroed allocation.
    rng = random.Random(3)
    for name in (
        "nav_msgs/msg/Odometry",
        "tether_msgs/msg/Telemetry",
        "sensor_msgs/msg/Image",
        "std_msgs/msg/String",
    ):
        msg = _message(rng, name)
        want = bytes(serialize(msg, name))
        dirty = bytearray(b"\xee" * len(want))
        out = codec(name).encode(msg, dirty)
        assert out is dirty and bytes(out) == want, name
        other = bytearray(len(want) + 8)  # wrong length: a new buffer, the old one untouched
        assert codec(name).encode(msg, other) is not other and other == bytearray(len(want) + 8)


def test_arrays_may_be_strided_or_lists():
    c = codec("std_msgs/msg/Float32MultiArray")
    msg = default_message("std_msgs/msg/Float32MultiArray")
    msg.data = np.arange(10, dtype=np.float32)[::2]
    want = serialize(type(msg)(msg.layout, np.ascontiguousarray(msg.data)), "std_msgs/msg/Float32MultiArray")
    assert bytes(c.encode(msg)) == want
    msg.data = [0.0, 2.0, 4.0, 6.0, 8.0]
    assert bytes(c.encode(msg)) == want


def test_bad_values_are_rejected_with_the_field():
    pose = default_message("geometry_msgs/msg/PoseWithCovariance")
    pose.covariance = np.zeros(35)  # a float64[36]
    with pytest.raises(MessageError, match="covariance must have 36 elements"):
        serialize(pose, "geometry_msgs/msg/PoseWithCovariance")
    s = default_message("std_msgs/msg/Int8")
    s.data = 300
    with pytest.raises(MessageError, match="std_msgs/msg/Int8 does not encode"):
        serialize(s, "std_msgs/msg/Int8")


@pytest.mark.parametrize(
    "payload, rule",
    [
        (b"\x00\x01\x00\x00\x05\x00\x00\x00abc", "bad string"),  # length past the end
        (b"\x00\x01\x00\x00\x04\x00\x00\x00abcd", "bad string"),  # no terminator
        (
            b"\x00\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
            "after a whole",
        ),  # trailing
        (b"\x00\x01\x00", "not little-endian CDR"),
    ],
)
def test_malformed_payloads_name_the_problem(payload, rule):
    with pytest.raises(CdrError, match=rule):
        codec("std_msgs/msg/String").decode(payload)
    with pytest.raises(MessageError):
        deserialize(payload, "std_msgs/msg/String")


def test_sequence_counts_that_cannot_fit_are_rejected():
    scan = (
        b"\x00\x01\x00\x00" + bytes(8) + b"\x01\x00\x00\x00\x00" + bytes(3) + bytes(28) + b"\xff\xff\xff\x0f"
    )
    with pytest.raises(MessageError, match="past the end|does not decode"):
        deserialize(scan, "sensor_msgs/msg/LaserScan")


def test_big_endian_cdr_still_decodes_through_rosbags():
    msg = default_message("geometry_msgs/msg/Twist")
    msg.linear.x, msg.angular.z = 0.5, -1.25
    data = bytes(typestore.serialize_cdr(msg, "geometry_msgs/msg/Twist", little_endian=False))
    assert data[1] == 0
    back = deserialize(data, "geometry_msgs/msg/Twist")
    assert (back.linear.x, back.angular.z) == (0.5, -1.25)


def test_a_publisher_reusing_its_buffer_delivers_every_message_intact(bus):
    # Same total size, different layout: a stale byte from the previous message would show.
    Payload, Header, Time = (
        get_type(n) for n in ("tether_msgs/msg/Payload", "std_msgs/msg/Header", "builtin_interfaces/msg/Time")
    )
    sent = [Payload(Header(Time(i, i), "f" * (i % 4)), np.full(64 - (i % 4), i, np.uint8)) for i in range(40)]
    node = Node("cdr_probe")
    spinner = spin_in_background(node)
    try:
        got: list = []
        node.create_subscription(Payload, "/cdr/data", got.append, QoSProfile(depth=100))
        pub = node.create_publisher(Payload, "/cdr/data", QoSProfile(depth=100))
        time.sleep(0.3)
        for msg in sent:
            pub.publish(msg)
        deadline = time.monotonic() + 10
        while len(got) < len(sent) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert [serialize(m) for m in got] == [serialize(m) for m in sent]
    finally:
        spinner.stop()
        node.destroy_node()
