"""One conformance suite for the transport interface, run against every implementation that can run here.

The rclpy transport needs ROS 2 (rclpy is in neither PyPI nor Debian 12), so it is skipped with
that reason on machines without it and runs on a ROS 2 machine.
"""

from __future__ import annotations

import importlib.util
import threading
import time

import pytest
from tests_helpers import wait_for

from tether.bus.qos import DurabilityPolicy, QoSProfile
from tether.bus.transport._base import ServiceCallError, Transport

TYPE = "std_msgs/msg/String"


def _zenoh(bus) -> Transport:
    from tether.bus.transport.zenoh import ZenohTransport, open_session

    session, mode = open_session([bus.endpoint], allow_peer=False)
    return ZenohTransport(session, mode)


def _rclpy(bus) -> Transport:
    from tether.bus.transport.rclpy import RclpyTransport

    return RclpyTransport()


HAVE_RCLPY = importlib.util.find_spec("rclpy") is not None
IMPLS = [
    pytest.param(_zenoh, id="zenoh"),
    pytest.param(
        _rclpy,
        id="rclpy",
        marks=pytest.mark.skipif(not HAVE_RCLPY, reason="rclpy needs a ROS 2 installation"),
    ),
]


@pytest.fixture(params=IMPLS)
def pair(request, bus):
    a, b = request.param(bus), request.param(bus)
    yield a, b
    a.close()
    b.close()


def _cdr(text: str) -> bytes:
    from tether.bus.messages import get_type, serialize

    return serialize(get_type(TYPE)(data=text), TYPE)


def test_bytes_reach_every_subscriber_in_order(pair):
    a, b = pair
    got1, got2 = [], []
    b.subscribe("/conf/topic", TYPE, QoSProfile(), lambda p, att: got1.append(p))
    a.subscribe("/conf/topic", TYPE, QoSProfile(), lambda p, att: got2.append(p))
    pub = a.publisher("/conf/topic", TYPE, QoSProfile())
    time.sleep(0.5)
    sent = [_cdr(f"m{i}") for i in range(50)]
    for s in sent:
        pub.put(s, b"\x00" * 24)
    assert wait_for(lambda: len(got1) == 50 and len(got2) == 50)
    assert got1 == sent and got2 == sent


def test_transient_local_history_for_late_subscriber(pair):
    a, b = pair
    qos = QoSProfile(depth=2, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    pub = a.publisher("/conf/latched", TYPE, qos)
    for i in range(3):
        pub.put(_cdr(f"v{i}"))
    time.sleep(0.3)
    got = []
    b.subscribe("/conf/latched", TYPE, qos, lambda p, att: got.append(p))
    assert wait_for(lambda: got == [_cdr("v1"), _cdr("v2")])


def test_service_round_trip_error_and_timeout(pair):
    a, b = pair
    srv = "std_srvs/srv/SetBool"
    from tether.bus.messages import get_srv_type, serialize

    st = get_srv_type(srv)
    seen = []

    def handler(payload: bytes, caller: str) -> bytes:
        seen.append(threading.current_thread().name)
        from tether.bus.messages import deserialize

        req = deserialize(payload, st.request_name)
        if not req.data:
            raise ValueError("refusing false")
        return serialize(st.Response(success=True, message="done"), st.response_name)

    handle = a.serve("/conf/toggle", srv, handler)
    time.sleep(0.3)
    reply = b.call("/conf/toggle", srv, serialize(st.Request(data=True), st.request_name), 2.0)
    assert reply == serialize(st.Response(success=True, message="done"), st.response_name)
    with pytest.raises(ServiceCallError, match="refusing false"):
        b.call("/conf/toggle", srv, serialize(st.Request(data=False), st.request_name), 2.0)
    handle.close()
    handle.close()  # idempotent
    time.sleep(0.2)
    with pytest.raises(ServiceCallError):
        b.call("/conf/toggle", srv, serialize(st.Request(data=True), st.request_name), 0.5)


def test_presence_tokens_come_and_go(pair):
    a, b = pair
    key = "@tether/node/%conf%probe/1/x"
    token = a.declare_token(key)
    assert wait_for(lambda: key in b.query_tokens("@tether/node/**"))
    token.close()
    assert wait_for(lambda: key not in b.query_tokens("@tether/node/**"))
    assert a.identity() != b.identity()
