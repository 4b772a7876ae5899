"""Recording and playback: ROS 2 bags in MCAP storage, which Foxglove, `ros2 bag` and rosbags open.

The recorder subscribes raw (no decoding): the CDR bytes on the bus are written as they are,
with each topic's type and message definition, so a recording reads back byte for byte.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from rosbags.rosbag2 import StoragePlugin, Writer

from tether.bus.messages import typestore
from tether.bus.node import Node
from tether.bus.qos import QoSProfile

__all__ = ["Recorder", "play"]


@dataclass
class Recorder:
    """Records topics to a rosbag2 folder with an MCAP file. `topics` empty = every topic, found as they appear."""

    node: Node
    path: Path
    topics: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if self.path.exists():
            raise FileExistsError(
                f"{self.path} exists; a recording never overwrites one: choose another -o path"
            )
        self._writer = Writer(self.path, version=8, storage_plugin=StoragePlugin.MCAP)
        self._writer.open()
        self._lock = threading.Lock()
        self._connections: dict[str, object] = {}
        self._stop = threading.Event()
        self._discover()
        self._thread = threading.Thread(target=self._discover_loop, daemon=True)
        self._thread.start()

    def _discover_loop(self) -> None:
        while not self._stop.wait(1.0):
            self._discover()

    def _discover(self) -> None:
        for topic, types in self.node.get_topic_names_and_types():
            if topic in self._connections or (self.topics and topic not in self.topics) or not types:
                continue
            tname = types[0]
            with self._lock:
                conn = self._writer.add_connection(topic, tname, typestore=typestore)
                self._connections[topic] = conn
            self.counts[topic] = 0
            self.node.create_subscription(
                tname, topic, lambda data, t=topic: self._write(t, data), QoSProfile(depth=1000), raw=True
            )

    def _write(self, topic: str, data: bytes) -> None:
        with self._lock:
            if self._stop.is_set():
                return
            self._writer.write(self._connections[topic], time.time_ns(), data)
            self.counts[topic] += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        with self._lock:
            self._writer.close()


def play(node: Node, path: Path, *, rate: float = 1.0, topics: list[str] | None = None) -> dict[str, int]:
    """Publish a recording's messages with their original spacing (scaled by `rate`); returns counts per topic."""
    from rosbags.highlevel import AnyReader

    if rate <= 0:
        raise ValueError(f"playback rate > 0 must hold, but got {rate}; e.g. --rate 2 plays twice as fast")
    counts: dict[str, int] = {}
    with AnyReader([Path(path)], default_typestore=typestore) as reader:
        conns = [c for c in reader.connections if not topics or c.topic in topics]
        pubs = {c.id: node.create_publisher(c.msgtype, c.topic, QoSProfile(depth=1000)) for c in conns}
        time.sleep(0.5)  # let subscribers' routes settle before the first message
        t0_bag = None
        t0 = time.monotonic()
        for conn, stamp, data in reader.messages(connections=conns):
            if t0_bag is None:
                t0_bag = stamp
            due = t0 + (stamp - t0_bag) / 1e9 / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            pubs[conn.id].publish(bytes(data))
            counts[conn.topic] = counts.get(conn.topic, 0) + 1
    return counts
