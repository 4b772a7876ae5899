"""Subscriptions: size check, gap count and rate cap on arrival; decoding and the callback on the executor.

Arrival (transport thread): oversized payloads are dropped and counted; sequence gaps in the
attachment count as dropped; the `rate_cap.<topic>` parameter withholds messages beyond the cap;
the message joins a queue of at most `depth` (older ones are dropped and counted, ROS 2's
KEEP_LAST). On the executor: decode (malformed payloads are dropped and counted), measure
end-to-end latency from `header.stamp` (on a busy topic, of a sample: `LatencyWindow.due`), run
the callback and time it. While the executor is idle and this subscription has nothing queued, a
cheap callback (the last one took under INLINE_MAX_SECONDS) is delivered on the transport thread
itself, under the executor's callback lock (see `Executor.enter_inline`): no hand-off between
threads per message.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tether.bus.cdr import CdrError
from tether.bus.messages import MessageError, codec, deserialize
from tether.bus.publisher import ATTACHMENT
from tether.bus.qos import QoSProfile
from tether.bus.transport._base import Closable

if TYPE_CHECKING:
    from tether.bus.node import Node
    from tether.bus.telemetry import Counter, LatencyWindow

__all__ = ["Subscription"]

DRAIN_BATCH = 32  # messages one executor item may deliver before timers and other callbacks get a turn
# A callback slower than this goes through the executor's queue next time: a transport thread busy
# in a long callback would hold back this subscription's samples instead of dropping the oldest.
INLINE_MAX_SECONDS = 0.002


class Subscription:
    """Created by `Node.create_subscription`. `raw=True` hands the callback CDR bytes undecoded."""

    def __init__(
        self,
        node: Node,
        msg_type: type,
        type_name: str,
        topic: str,
        declared: str,
        qos: QoSProfile,
        callback: Callable[[Any], None],
        counter: Counter,
        e2e: LatencyWindow,
        raw: bool = False,
    ) -> None:
        self.node = node
        self.msg_type = msg_type
        self.type_name = type_name
        self.topic_name = topic
        self.declared_name = declared
        self.qos_profile = qos
        self.callback = callback
        self.raw = raw
        self._counter = counter
        self._e2e = e2e
        self._pending: collections.deque[bytes] = collections.deque()
        self._scheduled = False
        self._last_seq: dict[int, int] = {}
        self._cap_period = 0.0
        self._next_allowed = 0.0
        self._max_bytes = node._max_message_bytes
        self._has_header = "header" in getattr(msg_type, "__dataclass_fields__", {})
        compiled = None if raw else codec(type_name)  # compiled now, not on the first message
        self._decode = compiled.decode if compiled is not None else self._decode_slow
        self._cheap = True  # the last callback took under INLINE_MAX_SECONDS
        self._handle: Closable | None = None
        self._token: Closable | None = None

    @property
    def topic(self) -> str:
        return self.topic_name

    def set_rate_cap(self, hz: float) -> None:
        """Deliver at most `hz` messages per second (0 = no cap)."""
        self._cap_period = 1.0 / hz if hz > 0 else 0.0
        self._next_allowed = 0.0

    # -- transport thread ---------------------------------------------------------------------
    def _on_sample(self, payload: bytes, attachment: bytes | None) -> None:
        if len(payload) > self._max_bytes:
            self.node.telemetry.oversized.value += 1
            return
        if attachment is not None and len(attachment) == ATTACHMENT.size:
            pub_id, seq, _ = ATTACHMENT.unpack(attachment)
            last = self._last_seq.get(pub_id)
            if last is not None and seq > last + 1:
                self.node.telemetry.dropped.value += seq - last - 1
            self._last_seq[pub_id] = seq
        if self._cap_period:
            now = time.monotonic()
            if now < self._next_allowed:
                self.node.telemetry.rate_capped.value += 1
                return
            self._next_allowed = max(self._next_allowed, now - self._cap_period) + self._cap_period
        if self._cheap and not self._scheduled and not self._pending:
            ex = self.node.executor
            if ex.enter_inline():
                try:
                    self._deliver(payload)
                finally:
                    ex.exit_inline()
                return
        if len(self._pending) >= self.qos_profile.depth:
            self._pending.popleft()
            self.node.telemetry.dropped.value += 1
        self._pending.append(payload)
        if not self._scheduled:
            # One executor item drains a burst: fewer queue hand-offs than one item per message.
            self._scheduled = True
            self.node.executor.post(self._drain)

    # -- executor -----------------------------------------------------------------------------
    def _drain(self) -> None:
        """Deliver up to DRAIN_BATCH pending messages, then yield to other callbacks and timers."""
        self._scheduled = False
        for _ in range(DRAIN_BATCH):
            try:
                payload = self._pending.popleft()
            except IndexError:
                return
            self._deliver(payload)
        if self._pending and not self._scheduled:
            self._scheduled = True
            self.node.executor.post(self._drain)

    def _deliver(self, payload: bytes) -> None:
        if self.raw:
            msg = payload
        else:
            try:
                msg = self._decode(payload)
            except (CdrError, MessageError):
                try:  # big-endian CDR goes to rosbags; anything else really is malformed
                    msg = self._decode_slow(payload)
                except MessageError:
                    self.node.telemetry.malformed.value += 1
                    return
            if self._has_header and self._e2e.due():
                stamp = msg.header.stamp
                sent_ns = stamp.sec * 1_000_000_000 + stamp.nanosec
                if sent_ns:
                    self._e2e.add((self.node._clock.now_ns() - sent_ns) / 1e6)
        self._counter.value += 1
        self._cheap = self.node._run_callback(self.callback, (msg,)) < INLINE_MAX_SECONDS

    def _decode_slow(self, payload: bytes) -> Any:
        return deserialize(payload, self.type_name)

    def destroy(self) -> None:
        if self._handle is not None:
            self._handle.close()
        if self._token is not None:
            self._token.close()
        self.node._forget(self)
