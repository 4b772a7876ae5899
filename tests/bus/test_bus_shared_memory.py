"""Large payloads through Zenoh shared memory: intact across processes, and bytes when the pool is full."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest
import zenoh
from tests_helpers import wait_for

from tether.bus import Node, QoSProfile, get_type, spin_in_background
from tether.bus.context import default_context
from tether.bus.transport.zenoh import shm_allowed, zenoh_config
from tether.settings import Settings, SettingsError, override

Payload = get_type("tether_msgs/msg/Payload")
Header = get_type("std_msgs/msg/Header")
Time = get_type("builtin_interfaces/msg/Time")

SIZE = 200 * 1024

# A publisher process: waits for a subscriber, sends COUNT messages whose bytes all equal their
# index, then reports which way they went.
PUBLISHER = """
import json, sys, time
import numpy as np
from tether.bus import Node, get_type
from tether.bus.context import default_context
Payload = get_type("tether_msgs/msg/Payload")
Header = get_type("std_msgs/msg/Header")
Time = get_type("builtin_interfaces/msg/Time")
count, size = int(sys.argv[1]), int(sys.argv[2])
node = Node("big_talker")
pub = node.create_publisher(Payload, "/big", 50)
deadline = time.monotonic() + 20
while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
    time.sleep(0.05)
time.sleep(0.3)
for i in range(count):
    pub.publish(Payload(header=Header(stamp=Time(sec=0, nanosec=0), frame_id=str(i)),
                        data=np.full(size, i, np.uint8)))
    time.sleep(0.01)
shm = default_context().transport.shm
print(json.dumps({"puts": shm.puts, "fallbacks": shm.fallbacks}), flush=True)
time.sleep(0.5)
node.destroy_node()
"""


def _collect(node: Node, got: list) -> None:
    def on_msg(msg) -> None:
        got.append((msg.header.frame_id, len(msg.data), int(msg.data.min()), int(msg.data.max())))

    node.create_subscription(Payload, "/big", on_msg, QoSProfile(depth=100))


def test_large_messages_cross_processes_through_shared_memory_intact(bus):
    count = 20
    env = {**bus.env, "TETHER_SHM_THRESHOLD": str(64 * 1024)}
    node = Node("big_listener")
    spinner = spin_in_background(node)
    got: list = []
    _collect(node, got)
    talker = subprocess.Popen(
        [sys.executable, "-c", PUBLISHER, str(count), str(SIZE)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = talker.communicate(timeout=60)
        assert talker.returncode == 0
        report = json.loads(out.strip().splitlines()[-1])
        assert wait_for(lambda: len(got) == count), f"{len(got)} of {count} messages arrived"
    finally:
        if talker.poll() is None:
            talker.kill()
            talker.wait()
        spinner.stop()
        node.destroy_node()
    # Every message whole and in order: its index in the frame id, and every byte equal to it.
    assert got == [(str(i), SIZE, i, i) for i in range(count)]
    assert report["puts"] + report["fallbacks"] == count
    assert report["puts"] > 0, report  # they went through the pool, not as bytes


def test_a_full_pool_falls_back_to_bytes_and_loses_nothing(bus):
    # A pool of three messages, and a subscriber on another session that keeps every sample it
    # gets (so the pool's buffers are never released): later messages must go as bytes.
    override(shm_threshold=64 * 1024, shm_pool_bytes=3 * (SIZE + 4096))
    holder = zenoh.open(zenoh_config("client", connect=[bus.endpoint]))
    kept: list = []
    holder_sub = holder.declare_subscriber("big", kept.append)
    node = Node("big_both")
    spinner = spin_in_background(node)
    got: list = []
    try:
        _collect(node, got)
        pub = node.create_publisher(Payload, "/big", 50)
        assert wait_for(lambda: pub.get_subscription_count() > 0)
        time.sleep(0.5)  # the holder's subscription reaches the router
        count = 10
        for i in range(count):
            pub.publish(
                Payload(
                    header=Header(stamp=Time(sec=0, nanosec=0), frame_id=str(i)),
                    data=np.full(SIZE, i, np.uint8),
                )
            )
        assert wait_for(lambda: len(got) == count and len(kept) == count), (len(got), len(kept))
        shm = default_context().transport.shm
        assert shm.puts + shm.fallbacks == count
        assert 0 < shm.puts <= 3 and shm.fallbacks >= count - 3, (shm.puts, shm.fallbacks)
        metrics, _ = node.telemetry.snapshot()  # both counts reach the node's telemetry
        assert (metrics["msgs.shm"], metrics["msgs.shm_fallback"]) == (shm.puts, shm.fallbacks)
        assert got == [(str(i), SIZE, i, i) for i in range(count)]
        held = [np.frombuffer(s.payload.to_bytes(), np.uint8) for s in kept]
        assert all(h[-SIZE:].min() == h[-SIZE:].max() == i for i, h in enumerate(held))
    finally:
        spinner.stop()
        node.destroy_node()
        holder_sub.undeclare()
        holder.close()


def test_shared_memory_follows_the_zenoh_config_and_settings_are_checked(tmp_path):
    assert shm_allowed(None)
    off = tmp_path / "zenoh.json5"
    off.write_text("{ transport: { shared_memory: { enabled: false } } }\n")
    assert not shm_allowed(off)
    with pytest.raises(SettingsError, match="TETHER_SHM_THRESHOLD must be >= 0"):
        Settings.from_env({"TETHER_SHM_THRESHOLD": "-1"})
    with pytest.raises(SettingsError, match="TETHER_SHM_POOL_BYTES must hold at least one message"):
        Settings.from_env({"TETHER_SHM_THRESHOLD": "1000000", "TETHER_SHM_POOL_BYTES": "1000"})
    with pytest.raises(SettingsError, match="integer number of bytes, but got 'lots'"):
        Settings.from_env({"TETHER_SHM_POOL_BYTES": "lots"})
    assert Settings.from_env({"TETHER_SHM_THRESHOLD": "0"}).shm_threshold == 0
