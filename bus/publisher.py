"""Publishers: serialise a message to CDR and put it on the bus with a small attachment.

Each publisher encodes into one buffer it reuses (the transport copies it before `put` returns),
so a stream of same-sized messages allocates nothing per message.

The attachment (24 bytes: publisher id, sequence number, send time in ns) lets subscribers count
messages lost in transport (sequence gaps) without touching the ROS 2 payload.
"""

from __future__ import annotations

import os
import struct
import threading
import time
from functools import partial
from typing import TYPE_CHECKING, Any

from tether.bus.cdr import CdrError
from tether.bus.messages import MessageError, codec, serialize_buffer
from tether.bus.qos import QoSProfile
from tether.bus.transport._base import Closable, RawPublisher

if TYPE_CHECKING:
    from tether.bus.node import Node
    from tether.bus.telemetry import Counter

__all__ = ["ATTACHMENT", "Publisher"]

ATTACHMENT = struct.Struct("<QQq")  # publisher id, sequence number, send time (ns since the epoch)


def _rosbags_encode(type_name: str, msg: Any, buf: bytearray | None) -> bytearray:
    return serialize_buffer(msg, type_name, buf)


class Publisher:
    """Created by `Node.create_publisher`; `publish` may be called from any thread."""

    def __init__(
        self,
        node: Node,
        msg_type: type,
        type_name: str,
        topic: str,
        declared: str,
        qos: QoSProfile,
        raw: RawPublisher,
        token: Closable,
        counter: Counter,
    ) -> None:
        self.node = node
        self.msg_type = msg_type
        self.type_name = type_name
        self.topic_name = topic
        self.declared_name = declared
        self.qos_profile = qos
        self._raw = raw
        self._token = token
        self._counter = counter
        self._id = int.from_bytes(os.urandom(8), "little")
        self._seq = 0
        self._buf: bytearray | None = None
        compiled = codec(type_name)  # compiled now, not on the first message
        self._encode = compiled.encode if compiled is not None else partial(_rosbags_encode, type_name)
        self._lock = threading.RLock()  # a local subscriber may publish again from inside put

    @property
    def topic(self) -> str:
        return self.topic_name

    def publish(self, msg: Any) -> None:
        """Publish a message of this publisher's type, or bytes already in CDR."""
        if type(msg) is not self.msg_type:
            if isinstance(msg, (bytes, bytearray, memoryview)):
                with self._lock:
                    self._seq += 1
                    self._raw.put(bytes(msg) if isinstance(msg, memoryview) else msg, self._attachment())
                self._counter.value += 1
                return
            if getattr(msg, "__msgtype__", self.type_name) != self.type_name:
                raise MessageError(
                    f"publisher on {self.topic_name} carries {self.type_name}, but got {msg.__msgtype__}"
                )
        with self._lock:  # one reused buffer: a 64 KiB message costs no allocation
            try:
                payload = self._buf = self._encode(msg, self._buf)
            except CdrError as exc:
                raise MessageError(f"cannot publish on {self.topic_name}: {exc}") from None
            self._seq += 1
            self._raw.put(payload, self._attachment())
        self._counter.value += 1

    def _attachment(self) -> bytes:
        return ATTACHMENT.pack(self._id, self._seq, time.time_ns())

    def get_subscription_count(self) -> int:
        return 1 if self._raw.matched() else 0

    def destroy(self) -> None:
        self._raw.close()
        self._token.close()
        self.node._forget(self)
