"""The `tether` command against a real bus: topic pub/echo, param set, node list, Prometheus metrics."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request

from tests_helpers import free_port

TETHER = [sys.executable, "-m", "tether"]


def run(bus, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([*TETHER, *args], env=bus.env, capture_output=True, text=True, timeout=timeout)


def test_pub_once_reaches_echo_once(bus):
    echo = subprocess.Popen(
        [*TETHER, "topic", "echo", "--once", "--timeout", "20", "/chatter", "std_msgs/msg/String"],
        env=bus.env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(2.5)
        pub = run(
            bus, "topic", "pub", "--times", "5", "-r", "5", "/chatter", "std_msgs/msg/String", "{data: hi}"
        )
        assert pub.returncode == 0, pub.stderr
        out, _ = echo.communicate(timeout=20)
        assert echo.returncode == 0
        assert "data: hi" in out
    finally:
        if echo.poll() is None:
            echo.kill()


def test_param_set_and_node_list_and_metrics(bus):
    code = "import sys; from tether.bus.demo import talker_main; talker_main(sys.argv[1:])"
    talker = subprocess.Popen([sys.executable, "-c", code, "--ros-args", "-r", "__ns:=/cli"], env=bus.env)
    port = free_port()
    metrics = subprocess.Popen([*TETHER, "metrics", "--port", str(port), "--duration", "180"], env=bus.env)
    try:
        time.sleep(2.0)
        assert "/cli/talker" in run(bus, "node", "list").stdout
        bad = run(bus, "param", "set", "/cli/talker", "rate", "0.0")
        assert bad.returncode == 1 and "0.1 <= value <= 1000.0" in bad.stderr.replace("\n", " ")
        ok = run(bus, "param", "set", "/cli/talker", "rate", "20.0")
        assert ok.returncode == 0 and "successful" in ok.stdout
        assert run(bus, "param", "get", "/cli/talker", "rate").stdout.strip() == "20.0"
        dump = run(bus, "param", "dump", "/cli/talker").stdout
        assert "ros__parameters" in dump and "rate: 20.0" in dump
        body = ""
        deadline = time.monotonic() + 45  # a loaded machine starts Python processes slowly
        while time.monotonic() < deadline:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
            except OSError:
                body = ""
            if 'tether_rate_chatter{node="/cli/talker"}' in body:
                break
            time.sleep(0.5)
        lines = [x for x in body.splitlines() if x.startswith('tether_rate_chatter{node="/cli/talker"}')]
        assert lines, f"no talker rate in the Prometheus output:\n{body[:2000]}"
        line = lines[0]
        assert float(line.split()[-1]) > 5.0  # the talker's live publish rate, not a placeholder
    finally:
        for p in (talker, metrics):
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


def test_rate_window_reports_the_last_messages_and_says_when_none_came():
    from tether._cli_bus import RateWindow

    w = RateWindow(5)
    assert w.report() is None  # nothing yet
    for i in range(20):
        w.add(i * 0.1 if i < 15 else 1.4 + (i - 14) * 0.5)  # 10 Hz, then 2 Hz for the last five
    r = w.report()
    # Only the last 5 arrivals count (as ros2's --window): 1.9, 2.4, 2.9, 3.4, 3.9 s.
    assert r["window"] == 5 and abs(r["rate"] - 2.0) < 1e-9 and abs(r["min"] - 0.5) < 1e-9
    assert w.report() is None  # no message since the last report: "no new messages", not a stale rate
    w.add(4.4)
    assert abs(w.report()["rate"] - 2.0) < 1e-9


def test_topic_hz_measures_a_talker_and_notices_it_stop(bus):
    code = "import sys; from tether.bus.demo import talker_main; talker_main(sys.argv[1:])"
    talker = subprocess.Popen(
        [sys.executable, "-c", code, "--ros-args", "-r", "__ns:=/hz", "-p", "rate:=20.0"], env=bus.env
    )
    hz = subprocess.Popen(
        [*TETHER, "topic", "hz", "--duration", "30", "/hz/chatter", "std_msgs/msg/String"],
        env=bus.env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        rates = []
        for line in hz.stdout:
            if line.startswith("average rate:"):
                rates.append(float(line.split(":")[1]))
                if len(rates) == 3:
                    break
        assert len(rates) == 3
        assert 10.0 < rates[-1] < 30.0  # 20 Hz, with a noisy machine's margins
        talker.terminate()
        talker.wait(timeout=20)
        # Within a few reports of the talker's end, hz says so instead of repeating the old rate.
        tail = [next(hz.stdout).strip() for _ in range(4)]
        assert "no new messages" in tail
    finally:
        for p in (talker, hz):
            if p.poll() is None:
                p.kill()
                p.wait()
