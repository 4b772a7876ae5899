"""The transport interface under the Node API: bytes (CDR) by ROS 2 name, services, presence.

Two implementations: Zenoh (the default, every machine) and rclpy (ROS 2 machines). The Node
API serialises and deserialises; a transport moves bytes. One conformance suite
(tests/bus/test_transport_conformance.py) runs against every implementation that can run.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

from tether.bus.qos import QoSProfile

__all__ = ["Closable", "RawPublisher", "ServiceCallError", "Transport", "TransportError"]


class TransportError(RuntimeError):
    """The transport failed (no router, connection lost). Not recoverable by retrying the same call."""


class ServiceCallError(RuntimeError):
    """A service call got no answer (timeout, no server) or an error answer; the message says which."""


class Closable(ABC):
    @abstractmethod
    def close(self) -> None:
        """Undeclare; idempotent."""


class RawPublisher(Closable):
    @abstractmethod
    def put(self, payload: bytes | bytearray, attachment: bytes | None = None) -> None:
        """Send one serialised message. Called from any thread; must not block beyond congestion control.

        `payload` is the publisher's reused buffer: copy what must outlive the call."""

    def matched(self) -> bool:
        """Whether some subscriber listens now (a hint; True when the transport cannot tell)."""
        return True


@dataclass(frozen=True)
class SampleMeta:
    """What a transport knows of a sample apart from its payload."""

    attachment: bytes | None


OnSample = Callable[[bytes, "bytes | None"], None]
OnRequest = Callable[[bytes, str], bytes]


class Transport(ABC):
    """Moves serialised ROS 2 messages. Created once per process by `tether.bus.init()`.

    Threading: callbacks (`on_sample`, service handlers) are called on the transport's own
    threads; the Node API hands them to its executor at once and never blocks them.
    """

    name: str = "abstract"

    @abstractmethod
    def identity(self) -> str:
        """This process's identity on the bus (Zenoh id, or ROS 2 node gid)."""

    @abstractmethod
    def publisher(self, topic: str, type_name: str, qos: QoSProfile) -> RawPublisher:
        """Declare a publisher on a resolved topic name ('/ns/topic'). Called by Node.create_publisher."""

    @abstractmethod
    def subscribe(self, topic: str, type_name: str, qos: QoSProfile, on_sample: OnSample) -> Closable:
        """Declare a subscription; `on_sample(payload, attachment)` per message. Called by create_subscription."""

    @abstractmethod
    def serve(self, service: str, srv_type: str, handler: OnRequest) -> Closable:
        """Serve a service; `handler(request_bytes, caller_identity) -> response_bytes`; raising sends an error."""

    @abstractmethod
    def call(self, service: str, srv_type: str, request: bytes, timeout: float) -> bytes:
        """Call a service and wait for one answer; raises ServiceCallError on timeout or error."""

    @abstractmethod
    def declare_token(self, key: str) -> Closable:
        """Announce presence (a liveliness token) under a graph key; gone when closed or the process dies."""

    @abstractmethod
    def query_tokens(self, pattern: str, timeout: float = 1.0) -> list[str]:
        """The graph keys alive now that match `pattern` (used by `tether node list`, `topic list`)."""

    @abstractmethod
    def close(self) -> None:
        """Close every declaration and the session. Called by `tether.bus.shutdown()`."""
