"""`tether record` then `tether play`: the same messages come back, and ROS tools read the bag."""

from __future__ import annotations

import time

from tether.bus import Node, get_type, spin_in_background
from tether.bus.recording import Recorder, play

String = get_type("std_msgs/msg/String")
Twist = get_type("geometry_msgs/msg/Twist")
Vector3 = get_type("geometry_msgs/msg/Vector3")


def test_record_then_play_reproduces_messages(bus, tmp_path):
    src = Node("source")
    rec_node = Node("recorder", enable_telemetry=False)
    rec_spin = spin_in_background(rec_node)
    bag = tmp_path / "run1"
    try:
        chatter = src.create_publisher(String, "/rec/chatter", 100)
        cmd = src.create_publisher(Twist, "/rec/cmd_vel", 100)
        time.sleep(0.3)
        rec = Recorder(rec_node, bag, ["/rec/chatter", "/rec/cmd_vel"])
        time.sleep(0.8)
        sent = [f"msg {i}" for i in range(20)]
        for i, text in enumerate(sent):
            chatter.publish(String(data=text))
            cmd.publish(Twist(linear=Vector3(x=float(i), y=0.0, z=0.0), angular=Vector3(x=0.0, y=0.0, z=0.1)))
            time.sleep(0.01)
        time.sleep(0.5)
        rec.close()
        assert rec.counts == {"/rec/chatter": 20, "/rec/cmd_vel": 20}
    finally:
        rec_spin.stop()
        rec_node.destroy_node()

    # rosbags' AnyReader and the mcap reader open it, with the ROS 2 schemas.
    from mcap.reader import make_reader
    from rosbags.highlevel import AnyReader

    from tether.bus.messages import typestore

    with AnyReader([bag], default_typestore=typestore) as reader:
        texts = [
            reader.deserialize(raw, conn.msgtype).data
            for conn, _, raw in reader.messages()
            if conn.topic == "/rec/chatter"
        ]
    assert texts == sent
    mcap_file = next(bag.glob("*.mcap"))
    with open(mcap_file, "rb") as f:
        summary = make_reader(f).get_summary()
    schemas = {s.name: s.encoding for s in summary.schemas.values()}
    assert schemas.get("std_msgs/msg/String") == "ros2msg"

    # play publishes them again, in order, on the same topics.
    sink = Node("sink")
    sink_spin = spin_in_background(sink)
    try:
        heard: list[str] = []
        xs: list[float] = []
        sink.create_subscription(String, "/rec/chatter", lambda m: heard.append(m.data), 100)
        sink.create_subscription(Twist, "/rec/cmd_vel", lambda m: xs.append(m.linear.x), 100)
        time.sleep(0.3)
        counts = play(src, bag, rate=4.0)
        deadline = time.monotonic() + 5
        while (len(heard) < 20 or len(xs) < 20) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert counts == {"/rec/chatter": 20, "/rec/cmd_vel": 20}
        assert heard == sent and xs == [float(i) for i in range(20)]
    finally:
        sink_spin.stop()
        sink.destroy_node()
        src.destroy_node()


def test_recorder_never_overwrites(bus, tmp_path):
    import pytest

    node = Node("rec2", enable_telemetry=False)
    try:
        (tmp_path / "exists").mkdir()
        with pytest.raises(FileExistsError, match="never overwrites"):
            Recorder(node, tmp_path / "exists")
    finally:
        node.destroy_node()
