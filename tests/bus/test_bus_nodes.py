"""The Node API over a real Zenoh router: processes, QoS, services, parameters, rate caps, bad input."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import pytest
from tests_helpers import wait_for

from tether.bus import (
    Node,
    Parameter,
    QoSProfile,
    ServiceCallError,
    get_srv_type,
    get_type,
    qos_profile_transient_local,
    spin_in_background,
)
from tether.bus.parameters import from_parameter_value, to_parameter_value

String = get_type("std_msgs/msg/String")
Header = get_type("std_msgs/msg/Header")


def spawn(bus, entry: str, *ros_args: str) -> subprocess.Popen:
    code = f"import sys; from tether.bus.demo import {entry}; {entry}(sys.argv[1:])"
    return subprocess.Popen(
        [sys.executable, "-c", code, "--ros-args", *ros_args],
        env=bus.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def stop(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


@pytest.fixture
def node(bus):
    n = Node("probe", namespace="/test")
    spinner = spin_in_background(n)
    yield n
    spinner.stop()
    n.destroy_node()


def test_pubsub_across_processes_with_namespace_and_params(bus, node):
    talker = spawn(bus, "talker_main", "-r", "__ns:=/demo", "-p", "rate:=40.0")
    try:
        got: list[str] = []
        node.create_subscription(String, "/demo/chatter", lambda m: got.append(m.data), 10)
        assert wait_for(lambda: len(got) >= 5), "no messages from the talker process"
        assert all(g.startswith("hello world: ") for g in got)
        assert "/demo/talker" in [f"{ns}/{n}" for n, ns in node.get_node_names_and_namespaces()]
        assert ("/demo/chatter", ["std_msgs/msg/String"]) in node.get_topic_names_and_types()
    finally:
        assert stop(talker) == 0


def test_transient_local_reaches_a_late_joiner(bus, node):
    pub = node.create_publisher(String, "map", qos_profile_transient_local)
    pub.publish(String(data="map v1"))
    pub.publish(String(data="map v2"))
    late = Node("late_joiner")
    spinner = spin_in_background(late)
    try:
        got: list[str] = []
        late.create_subscription(
            String, "/test/map", lambda m: got.append(m.data), qos_profile_transient_local
        )
        assert wait_for(lambda: got == ["map v2"], timeout=5), got  # depth 1: the last message only
        volatile: list[str] = []
        late.create_subscription(String, "/test/map", lambda m: volatile.append(m.data), 10)
        time.sleep(0.5)
        assert volatile == []  # a volatile subscription gets no history
    finally:
        spinner.stop()
        late.destroy_node()


def test_services_answer_and_errors_are_reported(bus, node):
    Trigger = get_srv_type("std_srvs/srv/Trigger")
    calls = []

    def handle(req, resp):
        calls.append(threading.current_thread().name)
        resp.success, resp.message = True, f"call {len(calls)}"
        return resp

    node.create_service(Trigger, "reset", handle)
    caller = Node("caller", enable_telemetry=False)
    try:
        client = caller.create_client(Trigger, "/test/reset")
        assert client.wait_for_service(5)
        resp = client.call(Trigger.Request(structure_needs_at_least_one_member=0))
        assert resp.success and resp.message == "call 1"
        assert calls[0].startswith("tether-spin")  # ran on the node's executor, not a transport thread
        missing = caller.create_client(Trigger, "/test/nobody")
        with pytest.raises(ServiceCallError, match="no server answered"):
            missing.call(Trigger.Request(structure_needs_at_least_one_member=0), timeout_sec=0.5)
    finally:
        caller.destroy_node()


def _set(caller, target, name, value):
    st = get_srv_type("rcl_interfaces/srv/SetParameters")
    P = get_type("rcl_interfaces/msg/Parameter")
    client = caller.create_client(st, f"{target}/set_parameters")
    return client.call(st.Request(parameters=[P(name=name, value=to_parameter_value(value))])).results[0]


def test_parameters_over_the_bus_accepted_and_rejected(bus, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("/demo/talker:\n  ros__parameters:\n    rate: 25.0\n")
    talker = spawn(bus, "talker_main", "-r", "__ns:=/demo", "--params-file", str(params))
    caller = Node("caller", enable_telemetry=False)
    try:
        get = caller.create_client(
            get_srv_type("rcl_interfaces/srv/GetParameters"), "/demo/talker/get_parameters"
        )
        assert get.wait_for_service(10)
        req = get_srv_type("rcl_interfaces/srv/GetParameters").Request(names=["rate"])
        assert from_parameter_value(get.call(req).values[0]) == 25.0  # from the parameter file
        ok = _set(caller, "/demo/talker", "rate", 50)  # an int is accepted for a double
        assert ok.successful, ok.reason
        assert from_parameter_value(get.call(req).values[0]) == 50.0
        bad = _set(caller, "/demo/talker", "rate", 5000.0)
        assert not bad.successful and "0.1 <= value <= 1000.0" in bad.reason and "5000" in bad.reason
        wrong = _set(caller, "/demo/talker", "rate", "fast")
        assert not wrong.successful and "type double" in wrong.reason
        unknown = _set(caller, "/demo/talker", "speed", 1.0)
        assert not unknown.successful and "not declared" in unknown.reason
        assert from_parameter_value(get.call(req).values[0]) == 50.0  # rejected sets changed nothing
    finally:
        caller.destroy_node()
        stop(talker)


def test_rate_cap_caps_a_subscription(bus, node):
    pub = node.create_publisher(String, "fast", 100)
    sink = Node("sink")
    spinner = spin_in_background(sink)
    try:
        got: list[float] = []
        sink.create_subscription(String, "/test/fast", lambda m: got.append(time.monotonic()), 100)
        assert sink.has_parameter("rate_cap.test.fast")
        result = sink.set_parameters([Parameter("rate_cap.test.fast", 10.0)])[0]
        assert result.successful
        time.sleep(0.3)
        start = time.monotonic()
        while time.monotonic() - start < 2.0:  # ~100 Hz for 2 s
            pub.publish(String(data="x"))
            time.sleep(0.01)
        time.sleep(0.3)
        assert 12 <= len(got) <= 26, len(got)  # 10 Hz cap over ~2 s, wide margins for a noisy machine
        assert sink.telemetry.rate_capped.value >= 100
        assert not sink.set_parameters([Parameter("rate_cap.test.fast", -1.0)])[0].successful
    finally:
        spinner.stop()
        sink.destroy_node()


def test_malformed_and_oversized_payloads_are_dropped_and_counted(bus, node):
    from tether.settings import override

    got: list[str] = []
    node.create_subscription(String, "/test/input", lambda m: got.append(m.data), 10)
    raw = node.transport.publisher("/test/input", "std_msgs/msg/String", QoSProfile())
    time.sleep(0.3)
    raw.put(b"\x00\x01\x00\x00\xff\xff\xff\x7fgarbage")  # a string length far past the payload
    raw.put(b"\x00")
    good = node.create_publisher(String, "/test/input", 10)
    good.publish(String(data="still alive"))
    assert wait_for(lambda: got == ["still alive"])
    assert node.telemetry.malformed.value == 2

    override(max_message_bytes=64)
    small = Node("small_limit")
    spinner = spin_in_background(small)
    try:
        seen: list[str] = []
        small.create_subscription(String, "/test/input", lambda m: seen.append(m.data), 10)
        time.sleep(0.3)
        good.publish(String(data="x" * 200))
        good.publish(String(data="short"))
        assert wait_for(lambda: seen == ["short"])
        assert small.telemetry.oversized.value == 1
    finally:
        spinner.stop()
        small.destroy_node()


def test_telemetry_reports_rates_and_latency(bus, node):
    Telemetry = get_type("tether_msgs/msg/Telemetry")
    Stamped = get_type("geometry_msgs/msg/PointStamped")
    reports: list[dict] = []
    node.create_subscription(Telemetry, "/test/worker/telemetry", lambda m: reports.append(m), 10)
    worker = Node("worker", namespace="/test")
    spinner = spin_in_background(worker)
    try:
        worker.create_subscription(Stamped, "/test/points", lambda m: None, 100)
        pub = node.create_publisher(Stamped, "/test/points", 100)
        msg = get_type("geometry_msgs/msg/PointStamped")(
            header=Header(stamp=node.get_clock().now().to_msg(), frame_id="map"),
            point=get_type("geometry_msgs/msg/Point")(x=0.0, y=0.0, z=0.0),
        )
        deadline = time.monotonic() + 3.5
        while time.monotonic() < deadline:
            msg.header.stamp = node.get_clock().now().to_msg()
            pub.publish(msg)
            time.sleep(0.02)
        assert wait_for(lambda: len(reports) >= 2)
        metrics = {m.name: m.value for m in reports[-1].metrics}
        assert reports[-1].node == "worker" and reports[-1].namespace == "/test"
        assert 20 <= metrics["rate.recv.test.points"] <= 60  # ~50 Hz sent
        assert 0 <= metrics["latency.e2e.test.points.p50_ms"] < 1000
        assert "latency.callback.p99_ms" in metrics and metrics["cpu.percent"] >= 0
        assert metrics["mem.rss_mb"] > 10
    finally:
        spinner.stop()
        worker.destroy_node()


def test_use_sim_time_follows_clock(bus, node):
    Clock = get_type("rosgraph_msgs/msg/Clock")
    TimeMsg = get_type("builtin_interfaces/msg/Time")
    sim = Node("sim_user", parameter_overrides={"use_sim_time": True})
    spinner = spin_in_background(sim)
    try:
        pub = node.create_publisher(Clock, "/clock", 10)
        time.sleep(0.3)
        pub.publish(Clock(clock=TimeMsg(sec=42, nanosec=5)))
        assert wait_for(lambda: sim.get_clock().now().nanoseconds == 42_000_000_005)
    finally:
        spinner.stop()
        sim.destroy_node()


def test_crashing_callback_is_reported_not_fatal(bus, node):
    seen: list[str] = []

    def cb(msg):
        seen.append(msg.data)
        if msg.data == "boom":
            raise RuntimeError("callback bug")

    node.create_subscription(String, "/test/crash", cb, 10)
    pub = node.create_publisher(String, "/test/crash", 10)
    time.sleep(0.3)
    pub.publish(String(data="boom"))
    pub.publish(String(data="after"))
    assert wait_for(lambda: seen == ["boom", "after"])


def test_inline_deliveries_keep_callbacks_exclusive_and_ordered(bus):
    """Transport threads deliver cheap callbacks themselves while the executor idles; never two at once."""
    Int32 = get_type("std_msgs/msg/Int32")
    sink = Node("inline_sink", enable_telemetry=False)
    source = Node("inline_source", enable_telemetry=False)
    spinner = spin_in_background(sink)
    active = threading.Lock()
    overlaps = 0
    got: dict[str, list[int]] = {"a": [], "b": []}
    threads: set[str] = set()

    def enter() -> None:
        nonlocal overlaps
        if not active.acquire(blocking=False):
            overlaps += 1
            active.acquire()
        threads.add(threading.current_thread().name)

    def on(topic: str):
        def cb(msg) -> None:
            enter()
            try:
                got[topic].append(msg.data)
                time.sleep(0.0002)  # widen the window an overlap would need
            finally:
                active.release()

        return cb

    ticks: list[str] = []

    def tick() -> None:
        enter()
        try:
            ticks.append(threading.current_thread().name)
        finally:
            active.release()

    try:
        for t in ("a", "b"):
            sink.create_subscription(Int32, f"/inline/{t}", on(t), QoSProfile(depth=10_000))
        sink.create_timer(0.005, tick)
        pubs = {t: source.create_publisher(Int32, f"/inline/{t}", 10) for t in ("a", "b")}
        time.sleep(0.3)
        n = 1500
        for i in range(n):
            pubs["a"].publish(Int32(data=i))
            pubs["b"].publish(Int32(data=i))
        assert wait_for(lambda: len(got["a"]) == n and len(got["b"]) == n, timeout=20), {
            k: len(v) for k, v in got.items()
        }
        assert overlaps == 0
        assert got["a"] == list(range(n)) and got["b"] == list(range(n))  # order within a topic
        assert ticks and all(t.startswith("tether-spin") for t in ticks)  # timers stay on the executor
        assert any(not t.startswith("tether-spin") for t in threads)  # some deliveries ran inline
    finally:
        spinner.stop()
        source.destroy_node()
        sink.destroy_node()


def test_a_slow_callback_goes_back_through_the_queue(bus):
    """A callback over the inline limit is queued next time, so KEEP_LAST drops the oldest again."""
    Int32 = get_type("std_msgs/msg/Int32")
    sink = Node("slow_sink")
    source = Node("slow_source", enable_telemetry=False)
    spinner = spin_in_background(sink)
    where: list[str] = []

    def slow(msg) -> None:
        where.append(threading.current_thread().name)
        time.sleep(0.01)

    try:
        sink.create_subscription(Int32, "/slow/x", slow, QoSProfile(depth=3))
        pub = source.create_publisher(Int32, "/slow/x", 10)
        time.sleep(0.3)
        for i in range(60):
            pub.publish(Int32(data=i))
        assert wait_for(lambda: sink.telemetry.dropped.value > 0 and len(where) >= 4, timeout=10)
        time.sleep(0.3)
        assert not where[0].startswith("tether-spin")  # the first (cheap as far as anyone knew) ran inline
        assert all(t.startswith("tether-spin") for t in where[1:]), where  # then the executor's queue
        assert len(where) < 60  # depth 3 under a slow callback: the oldest were dropped
    finally:
        spinner.stop()
        source.destroy_node()
        sink.destroy_node()


def test_inline_delivery_never_nests_and_waits_for_an_idle_executor():
    from tether.bus.executor import SingleThreadedExecutor

    ex = SingleThreadedExecutor()
    assert not ex.enter_inline()  # not spinning: messages wait in the queue, as rclpy's do
    spinner = threading.Thread(target=ex.spin, daemon=True)
    spinner.start()
    try:
        assert wait_for(ex.enter_inline, timeout=5)  # idle now: a transport thread may deliver
        assert not ex.enter_inline()  # a delivery on the same thread (a callback's own publish) queues
        got: list[bool] = []
        other = threading.Thread(target=lambda: got.append(ex.enter_inline()))
        other.start()
        other.join()
        assert got == [False]  # another transport thread waits its turn too
        ex.exit_inline()
        assert ex.enter_inline()
        ex.exit_inline()
    finally:
        ex.shutdown()
        spinner.join(timeout=5)
    assert not ex.enter_inline()
