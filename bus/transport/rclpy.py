"""The rclpy transport: the same Node API on a ROS 2 machine, over the robot's own DDS (or rmw_zenoh).

Moves serialised messages with rclpy's raw subscriptions and serialised publishing, so tether
nodes and ROS 2 nodes share topics directly. Presence comes from the ROS 2 graph instead of
liveliness tokens. rclpy cannot be installed on the build machines (not in PyPI nor Debian 12):
the conformance suite runs this transport only where ROS 2 is sourced.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from tether.bus.graph import entity_key, node_key
from tether.bus.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from tether.bus.transport._base import (
    Closable,
    OnRequest,
    OnSample,
    RawPublisher,
    ServiceCallError,
    Transport,
    TransportError,
)

__all__ = ["RclpyTransport"]


def _ros_qos(qos: QoSProfile) -> Any:
    from rclpy.qos import DurabilityPolicy as D
    from rclpy.qos import HistoryPolicy
    from rclpy.qos import QoSProfile as RosQoS
    from rclpy.qos import ReliabilityPolicy as R

    return RosQoS(
        history=HistoryPolicy.KEEP_LAST,
        depth=qos.depth,
        reliability=R.RELIABLE if qos.reliability is ReliabilityPolicy.RELIABLE else R.BEST_EFFORT,
        durability=D.TRANSIENT_LOCAL if qos.durability is DurabilityPolicy.TRANSIENT_LOCAL else D.VOLATILE,
    )


class _Handle(Closable):
    def __init__(self, node: Any, entity: Any, kind: str) -> None:
        self._node, self._entity, self._kind = node, entity, kind
        self._closed = False

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        getattr(self._node, f"destroy_{self._kind}")(self._entity)


class _Publisher(RawPublisher):
    def __init__(self, node: Any, pub: Any) -> None:
        self._node, self._pub = node, pub
        self._closed = False

    def put(self, payload: bytes, attachment: bytes | None = None) -> None:
        self._pub.publish(bytes(payload))  # rclpy publishes bytes as an already serialised message

    def matched(self) -> bool:
        return self._pub.get_subscription_count() > 0

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._node.destroy_publisher(self._pub)


class _Token(Closable):
    def close(self) -> None:  # presence on ROS 2 is the graph itself
        pass


class RclpyTransport(Transport):
    name = "rclpy"

    def __init__(self) -> None:
        try:
            import rclpy
            from rclpy.executors import MultiThreadedExecutor
        except ImportError as exc:
            raise TransportError(
                "TETHER_TRANSPORT=rclpy needs ROS 2's rclpy: source /opt/ros/<distro>/setup.bash first"
            ) from exc
        self._rclpy = rclpy
        self._own_init = not rclpy.ok()
        if self._own_init:
            rclpy.init()
        self._node = rclpy.create_node(f"tether_transport_{os.getpid()}")
        self._executor = MultiThreadedExecutor(num_threads=2)
        self._executor.add_node(self._node)
        self._thread = threading.Thread(target=self._executor.spin, daemon=True, name="tether-rclpy")
        self._thread.start()

    def identity(self) -> str:
        return self._node.get_fully_qualified_name()

    def _msg(self, type_name: str) -> Any:
        from rosidl_runtime_py.utilities import get_message

        return get_message(type_name)

    def _srv(self, type_name: str) -> Any:
        from rosidl_runtime_py.utilities import get_service

        return get_service(type_name)

    def publisher(self, topic: str, type_name: str, qos: QoSProfile) -> RawPublisher:
        return _Publisher(self._node, self._node.create_publisher(self._msg(type_name), topic, _ros_qos(qos)))

    def subscribe(self, topic: str, type_name: str, qos: QoSProfile, on_sample: OnSample) -> Closable:
        sub = self._node.create_subscription(
            self._msg(type_name), topic, lambda data: on_sample(bytes(data), None), _ros_qos(qos), raw=True
        )
        return _Handle(self._node, sub, "subscription")

    def serve(self, service: str, srv_type: str, handler: OnRequest) -> Closable:
        from rclpy.serialization import deserialize_message, serialize_message

        srv_cls = self._srv(srv_type)

        def callback(request, response):
            reply = handler(serialize_message(request), "")
            return deserialize_message(reply, srv_cls.Response)

        return _Handle(self._node, self._node.create_service(srv_cls, service, callback), "service")

    def call(self, service: str, srv_type: str, request: bytes, timeout: float) -> bytes:
        from rclpy.serialization import deserialize_message, serialize_message

        srv_cls = self._srv(srv_type)
        client = self._node.create_client(srv_cls, service)
        try:
            if not client.wait_for_service(timeout_sec=timeout):
                raise ServiceCallError(
                    f"no server answered service {service} ({srv_type}) within {timeout:g} s"
                )
            future = client.call_async(deserialize_message(request, srv_cls.Request))
            deadline = time.monotonic() + timeout
            while not future.done():
                if time.monotonic() > deadline:
                    raise ServiceCallError(f"service {service} did not answer within {timeout:g} s")
                time.sleep(0.005)
            if future.exception() is not None:
                raise ServiceCallError(f"service {service} failed: {future.exception()}")
            return serialize_message(future.result())
        finally:
            self._node.destroy_client(client)

    def declare_token(self, key: str) -> Closable:
        return _Token()

    def query_tokens(self, pattern: str, timeout: float = 1.0) -> list[str]:
        """The ROS 2 graph written as tether graph keys (nodes, publishers, subscriptions, services)."""
        keys: list[str] = []
        n = self._node
        for name, ns in n.get_node_names_and_namespaces():
            fqn = f"{ns.rstrip('/')}/{name}"
            keys.append(node_key(fqn, 0, "ros2"))
            for kind, getter in (
                ("pub", n.get_publisher_names_and_types_by_node),
                ("sub", n.get_subscriber_names_and_types_by_node),
                ("srv", n.get_service_names_and_types_by_node),
            ):
                for topic, types in getter(name, ns):
                    keys.extend(entity_key(kind, topic, t, fqn) for t in types)
        prefix = pattern.split("*", 1)[0]
        return sorted(k for k in keys if k.startswith(prefix))

    def close(self) -> None:
        self._executor.shutdown()
        self._node.destroy_node()
        if self._own_init and self._rclpy.ok():
            self._rclpy.shutdown()
