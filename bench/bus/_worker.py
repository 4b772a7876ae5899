"""One side of a bus benchmark run, in its own process: `python -m tether.bench.bus._worker ROLE API ...`.

ROLE pub: send `count` messages of `size` bytes as fast as reliable delivery allows (or paced at
`rate` Hz for latency), then a few end markers. ROLE sub: receive (and, for the Node API,
deserialise) until the end marker, print one JSON line: received count, seconds from first to
last message, latency samples in ms (send stamp to callback), CPU seconds of the whole process (every
thread, Zenoh's included) from the first message to the end marker (read there, not per message: a
clock read per message would add to the path being measured). The publisher prints one JSON line too: CPU
seconds of its process over its sending loop.
API node: tether's Node API with tether_msgs/Payload; API raw: zenoh-python with the same CDR bytes.
"""

from __future__ import annotations

import json
import struct
import sys
import time

END = b"__end__"


def _payload_msg(size: int):
    import numpy as np

    from tether.bus.messages import get_type

    Payload = get_type("tether_msgs/msg/Payload")
    Header = get_type("std_msgs/msg/Header")
    Time = get_type("builtin_interfaces/msg/Time")
    return Payload(
        header=Header(stamp=Time(sec=0, nanosec=0), frame_id=""), data=np.zeros(size, np.uint8)
    ), Time


def run_sub(api: str, endpoint: str, duration: float) -> None:
    t_first = t_last = None
    cpu_first = cpu_last = 0.0
    count = 0
    lat: list[float] = []
    done = False

    def seen(sent_ns: int) -> None:
        nonlocal t_first, t_last, count, cpu_first
        now = time.time_ns()
        if t_first is None:
            t_first = now
            cpu_first = time.process_time()
        t_last = now
        count += 1
        if sent_ns:
            lat.append((now - sent_ns) / 1e6)

    if api == "raw":
        import zenoh

        from tether.bus.transport.zenoh import zenoh_config

        session = zenoh.open(zenoh_config("client", connect=[endpoint]))

        def on_sample(sample) -> None:
            nonlocal done, cpu_last
            data = sample.payload.to_bytes()
            if data == END:
                cpu_last = time.process_time()
                done = True
                return
            # The send stamp sits where the CDR header's stamp is (after the 4-byte encapsulation).
            sec, nsec = struct.unpack_from("<iI", data, 4)
            seen(sec * 1_000_000_000 + nsec)

        sub = session.declare_subscriber("bench/data", on_sample)
        ctl = session.declare_subscriber("bench/ctl", on_sample)
        print("ready", flush=True)
        deadline = time.time() + duration
        while not done and time.time() < deadline:
            time.sleep(0.01)
        sub.undeclare()
        ctl.undeclare()
        session.close()
    else:
        from tether.bus import Node, QoSProfile, get_type, init, shutdown, spin_in_background
        from tether.settings import override

        override(connect=(endpoint,))
        init(allow_peer=False)
        node = Node("bench_sub", enable_telemetry=False)
        Payload = get_type("tether_msgs/msg/Payload")
        String = get_type("std_msgs/msg/String")

        def on_msg(msg) -> None:
            s = msg.header.stamp
            seen(s.sec * 1_000_000_000 + s.nanosec)

        def on_ctl(msg) -> None:
            nonlocal done, cpu_last
            cpu_last = time.process_time()
            done = True

        node.create_subscription(Payload, "/bench/data", on_msg, QoSProfile(depth=100_000))
        node.create_subscription(String, "/bench/ctl", on_ctl, 10)
        spinner = spin_in_background(node)
        print("ready", flush=True)
        deadline = time.time() + duration
        while not done and time.time() < deadline:
            time.sleep(0.01)
        spinner.stop()
        node.destroy_node()
        shutdown()
    seconds = (t_last - t_first) / 1e9 if t_first is not None and t_last is not None else 0.0
    report = {"count": count, "seconds": seconds, "cpu_s": cpu_last - cpu_first, "latency_ms": lat[-5000:]}
    print(json.dumps(report), flush=True)


def run_pub(api: str, endpoint: str, size: int, count: int, rate: float) -> None:
    msg, Time = _payload_msg(size)
    period = 1.0 / rate if rate > 0 else 0.0
    if api == "raw":
        import zenoh

        from tether.bus.messages import serialize
        from tether.bus.transport.zenoh import zenoh_config

        session = zenoh.open(zenoh_config("client", connect=[endpoint]))
        pub = session.declare_publisher(
            "bench/data",
            congestion_control=zenoh.CongestionControl.BLOCK,
            reliability=zenoh.Reliability.RELIABLE,
        )
        template = bytearray(serialize(msg, "tether_msgs/msg/Payload"))
        time.sleep(0.5)
        next_t = time.perf_counter()
        cpu = time.process_time()
        for _ in range(count):
            ns = time.time_ns()
            struct.pack_into("<iI", template, 4, ns // 1_000_000_000, ns % 1_000_000_000)
            pub.put(bytes(template))
            if period:
                next_t += period
                time.sleep(max(0.0, next_t - time.perf_counter()))
        cpu = time.process_time() - cpu
        time.sleep(0.2)
        for _ in range(3):
            session.put("bench/ctl", END)
            time.sleep(0.1)
        pub.undeclare()
        session.close()
        print(json.dumps({"count": count, "cpu_s": cpu}), flush=True)
        return
    from tether.bus import Node, QoSProfile, get_type, init, shutdown
    from tether.settings import override

    override(connect=(endpoint,))
    init(allow_peer=False)
    node = Node("bench_pub", enable_telemetry=False)
    Payload = get_type("tether_msgs/msg/Payload")
    String = get_type("std_msgs/msg/String")
    pub = node.create_publisher(Payload, "/bench/data", QoSProfile(depth=10))
    ctl = node.create_publisher(String, "/bench/ctl", 10)
    time.sleep(0.5)
    next_t = time.perf_counter()
    cpu = time.process_time()
    for _ in range(count):
        ns = time.time_ns()
        msg.header.stamp = Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)
        pub.publish(msg)
        if period:
            next_t += period
            time.sleep(max(0.0, next_t - time.perf_counter()))
    cpu = time.process_time() - cpu
    time.sleep(0.2)
    for _ in range(3):
        ctl.publish(String(data="end"))
        time.sleep(0.1)
    node.destroy_node()
    shutdown()
    print(json.dumps({"count": count, "cpu_s": cpu}), flush=True)


if __name__ == "__main__":
    role, api, endpoint = sys.argv[1:4]
    if role == "sub":
        run_sub(api, endpoint, float(sys.argv[4]))
    else:
        run_pub(api, endpoint, int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6]))
