"""The demo launch file over the real bus: talker and listener as launched processes, params from the launch file."""

from __future__ import annotations

import threading
import time

from tether.launch import LaunchService, parse_launch_file
from tether.launch.packages import repo_root


def test_demo_pair_talks_and_gets_its_launch_parameters(bus):
    from tether.bus import Node, get_srv_type, init, shutdown
    from tether.bus.parameters import from_parameter_value

    lines: list[str] = []
    heard = threading.Event()

    def output(line: str) -> None:
        lines.append(line)
        if line.startswith("[listener-1]") and "heard 'hello world" in line:
            heard.set()

    desc = parse_launch_file(repo_root() / "launch" / "demo.launch.yaml", {"rate": "25.5", "namespace": "lt"})
    service = LaunchService(desc, output=output, duration=90)
    result: list = []
    thread = threading.Thread(target=lambda: result.append(service.run()), daemon=True)
    thread.start()
    try:
        assert heard.wait(60), "the listener heard nothing:\n" + "\n".join(lines)
        init()
        probe = Node("launch_probe", enable_telemetry=False, start_parameter_services=False)
        try:
            st = get_srv_type("rcl_interfaces/srv/GetParameters")
            client = probe.create_client(st, "/lt/talker/get_parameters")
            deadline, resp = time.monotonic() + 20, None
            while resp is None and time.monotonic() < deadline:
                try:
                    resp = client.call(st.Request(names=["rate"]), 5.0)
                except Exception:  # the service may not answer in the first instant
                    time.sleep(0.2)
            assert resp is not None
            # The value went through the launcher's temporary ros__parameters file (--params-file).
            assert from_parameter_value(resp.values[0]) == 25.5
        finally:
            probe.destroy_node()
            shutdown()
    finally:
        service.shutdown()
        thread.join(timeout=40)
    (summary,) = result
    assert summary.ok, summary.format()
    for label in ("talker-1", "listener-1"):
        (run,) = summary.process(label).exits
        assert run.during_shutdown and run.returncode == 0, summary.format()
