"""Publishers: serialise a message to CDR and put it on the bus with a small attachment.

The attachment (24 bytes: publisher id, sequence number, send time in ns) lets subscribers count
messages lost in transport (sequence gaps) without touching the ROS 2 payload.
"""

from __future__ import annotations

import os
import struct
import time
from typing import TYPE_CHECKING, Any

from tether.bus.messages import MessageError, serialize_buffer
from tether.bus.qos import QoSProfile
from tether.bus.transport._base import Closable, RawPublisher

if TYPE_CHECKING:
    from tether.bus.node import Node
    from tether.bus.telemetry import Counter

__all__ = ["ATTACHMENT", "Publisher"]

ATTACHMENT = struct.Struct("<QQq")  # publisher id, sequence number, send time (ns since the epoch)


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

    @property
    def topic(self) -> str:
        return self.topic_name

    def publish(self, msg: Any) -> None:
        """Publish a message of this publisher's type, or bytes already in CDR."""
        if isinstance(msg, (bytes, bytearray)):
            payload = msg
        elif isinstance(msg, memoryview):
            payload = bytes(msg)
        else:
            if getattr(msg, "__msgtype__", self.type_name) != self.type_name:
                raise MessageError(
                    f"publisher on {self.topic_name} carries {self.type_name}, but got {msg.__msgtype__}"
                )
            payload = serialize_buffer(msg, self.type_name)
        self._seq += 1
        self._raw.put(payload, ATTACHMENT.pack(self._id, self._seq, time.time_ns()))
        self._counter.value += 1

    def get_subscription_count(self) -> int:
        return 1 if self._raw.matched() else 0

    def destroy(self) -> None:
        self._raw.close()
        self._token.close()
        self.node._forget(self)
