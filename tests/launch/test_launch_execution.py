"""Running launch files with real processes: prefixed output, shutdown escalation, crashes, respawn, hooks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tether.launch import LaunchService, ProcessHook, ProcessInfo, StopReason, parse_launch_file

PYTHON = {"python": sys.executable}


class Lines:
    """Collects the launcher's output; `wait_for` blocks until a line containing a text has arrived."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()

    def __call__(self, line: str) -> None:
        with self._cond:
            self.lines.append(line)
            self._cond.notify_all()

    def wait_for(self, *texts: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not all(any(t in line for line in self.lines) for t in texts):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"never saw {texts} in:\n" + "\n".join(self.lines))
                self._cond.wait(left)

    def text(self) -> str:
        return "\n".join(self.lines)


class RecordingHook(ProcessHook):
    """Records each call; checks on start that the pid is a live child of this process in its own group."""

    def __init__(self) -> None:
        self.starts: list[tuple[str, int]] = []
        self.exits: list[tuple[str, int, int]] = []
        self.facts: dict[int, tuple[int, int]] = {}  # pid -> (parent pid, process group id), from /proc

    def on_start(self, info: ProcessInfo, pid: int) -> None:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        self.facts[pid] = (int(fields[1]), int(fields[2]))  # stat fields 4 (ppid) and 5 (pgrp)
        self.starts.append((info.label, pid))

    def on_exit(self, info: ProcessInfo, pid: int, returncode: int) -> None:
        self.exits.append((info.label, pid, returncode))


def run_in_thread(service: LaunchService) -> tuple[threading.Thread, list]:
    result: list = []
    thread = threading.Thread(target=lambda: result.append(service.run()), daemon=True)
    thread.start()
    return thread, result


def test_stop_escalates_sigint_sigterm_sigkill(data_dir):
    lines, hook = Lines(), RecordingHook()
    service = LaunchService(
        parse_launch_file(data_dir / "stop.launch.yaml", PYTHON), hooks=[hook], output=lines
    )
    thread, result = run_in_thread(service)
    lines.wait_for("[chatty-1] ready", "[stubborn-1] ready", "[chatty-1] tick 1")
    service.shutdown()
    thread.join(timeout=20)
    (summary,) = result

    assert summary.reason is StopReason.REQUESTED and summary.ok
    chatty, stubborn = summary.process("chatty-1"), summary.process("stubborn-1")
    # chatty handles SIGINT and exits 0; stubborn ignores SIGINT and SIGTERM: only SIGKILL ends it.
    assert (chatty.exits[0].stopped_with, chatty.exits[0].returncode) == ("SIGINT", 0)
    assert "[chatty-1] got SIGINT" in lines.text()
    assert (stubborn.exits[0].stopped_with, stubborn.exits[0].returncode) == ("SIGKILL", -signal.SIGKILL)
    assert "[WARN] [stubborn-1]: still running; sending SIGTERM" in lines.text()
    # Hooks got the real pids: children of this process, each the leader of its own process group.
    pids = {label: pid for label, pid in hook.starts}
    assert pids == {"chatty-1": chatty.exits[0].pid, "stubborn-1": stubborn.exits[0].pid}
    for pid in pids.values():
        assert hook.facts[pid] == (os.getpid(), pid)
        assert not Path(f"/proc/{pid}").exists()  # reaped
    assert sorted(hook.exits) == sorted(
        [("chatty-1", pids["chatty-1"], 0), ("stubborn-1", pids["stubborn-1"], -signal.SIGKILL)]
    )


def test_crashes_are_reported_with_exit_code_and_signal(data_dir):
    lines = Lines()
    summary = LaunchService(parse_launch_file(data_dir / "crash.launch.yaml", PYTHON), output=lines).run()
    assert summary.reason is StopReason.ALL_EXITED
    assert not summary.ok
    assert summary.process("exit3-1").returncodes == [3]
    assert summary.process("aborts-1").returncodes == [-signal.SIGABRT]
    assert summary.process("clean-1").returncodes == [0] and summary.process("clean-1").crashes == 0
    missing = summary.process("missing-1")
    assert missing.starts == 0 and missing.returncodes == [None] and missing.crashes == 1
    text = lines.text()
    assert "[exit3-1] ending with 3" in text
    assert "[ERROR] [exit3-1]: process has died [pid " in text and "exit code 3, cmd '" in text
    assert "signal SIGABRT (-6)" in text
    assert "[INFO] [clean-1]: process has finished cleanly" in text
    assert "[ERROR] [missing-1]: failed to start" in text
    assert "crashed: exit code 3" in summary.format()


def test_respawn_restarts_until_max_retries(data_dir):
    hook = RecordingHook()
    summary = LaunchService(
        parse_launch_file(data_dir / "respawn.launch.yaml", PYTHON), hooks=[hook], output=Lines()
    ).run()
    flaky = summary.process("flaky-1")
    assert flaky.starts == 3  # the first start and respawn_max_retries=2 respawns
    assert flaky.returncodes == [3, 3, 3] and flaky.crashes == 3
    assert len({pid for _, pid in hook.starts}) == 3  # a new process each time
    assert [pid for _, pid, _ in hook.exits] == [pid for _, pid in hook.starts]
    assert summary.reason is StopReason.ALL_EXITED


def test_respawned_process_is_stopped_and_pending_respawn_cancelled(tmp_path, data_dir):
    path = tmp_path / "r.launch.yaml"
    path.write_text(
        "launch:\n"
        f"- executable: {{cmd: '{sys.executable} {data_dir}/crash.py 1', name: again, respawn: true, "
        "respawn_delay: 60}\n"
    )
    lines = Lines()
    service = LaunchService(parse_launch_file(path), output=lines)
    thread, result = run_in_thread(service)
    lines.wait_for("[INFO] [again-1]: respawning in 60 s")
    service.shutdown()
    thread.join(timeout=10)
    assert not thread.is_alive()  # the 60 s respawn wait did not hold the shutdown
    assert result[0].process("again-1").starts == 1


def test_node_arguments_params_file_and_log_output(data_dir, ament_prefix, tmp_path):
    desc = parse_launch_file(
        data_dir / "driver.launch.yaml", {}, environ={}, ament_prefix_path=[ament_prefix]
    )
    lines = Lines()
    summary = LaunchService(desc, output=lines, log_dir=tmp_path / "logs").run()
    assert summary.ok and summary.process("drv-1").returncodes == [0]
    (argv_line,) = [line for line in lines.lines if line.startswith("[drv-1] argv")]
    argv = argv_line.split()[2:]
    assert argv[:6] == ["--ros-args", "-r", "__node:=drv", "-r", "__ns:=/robot", "-r"]
    assert argv[6] == "scan:=front_scan"
    shipped = str(ament_prefix / "share" / "fake_robot" / "config" / "driver.yaml")
    assert argv[7:9] == ["--params-file", shipped]
    temp = Path(argv[10])
    assert argv[9] == "--params-file" and temp.name == "drv-1-params-1.yaml"
    assert "/**: |   ros__parameters: |     rate: 12.5" in lines.text()
    assert not temp.exists() and not temp.parent.exists()  # the launcher removed its temporary files
    # output: both -> the same lines in the run's log folder.
    log = (tmp_path / "logs" / "drv-1.log").read_text()
    assert summary.log_dir == tmp_path / "logs" and "argv --ros-args" in log


def test_duration_bounds_the_run_and_log_only_output(tmp_path, data_dir):
    path = tmp_path / "d.launch.yaml"
    path.write_text(
        f"launch:\n- executable: {{cmd: '{sys.executable} {data_dir}/chatty.py', name: ticker, output: log}}\n"
    )
    lines = Lines()
    summary = LaunchService(
        parse_launch_file(path), output=lines, duration=1.0, log_dir=tmp_path / "logs"
    ).run()
    assert summary.reason is StopReason.DURATION and summary.ok
    assert summary.process("ticker-1").exits[0].stopped_with == "SIGINT"
    assert "tick 0" not in lines.text()  # output: log keeps it off the screen ...
    assert "tick 0" in (tmp_path / "logs" / "ticker-1.log").read_text()  # ... and in the log


def test_ctrl_c_on_the_tether_launch_command(data_dir):
    """The real command in its own process: SIGINT to it stops every child (escalating for the stubborn one)."""
    cmd = [
        sys.executable,
        "-c",
        "import sys; from tether.cli import main; main(sys.argv[1:])",
        "launch",
        str(data_dir / "stop.launch.yaml"),
        f"python:={sys.executable}",
        "--no-router",
        "--no-hooks",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen: list[str] = []
    try:
        while sum("] ready" in line for line in seen) < 2:
            line = proc.stdout.readline()
            assert line, "the launcher ended early:\n" + "".join(seen)
            seen.append(line)
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = "".join(seen) + rest
    assert proc.returncode == 0, out
    children = [
        int(line.split("pid [")[1].split("]")[0]) for line in out.splitlines() if "started with pid" in line
    ]
    assert len(children) == 2
    for pid in children:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert "[chatty-1] got SIGINT" in out
    assert "process stopped after SIGKILL" in out
    assert "interrupted (SIGINT)" in out  # the summary table's title


def test_second_shutdown_skips_the_escalation_waits(tmp_path, data_dir):
    path = tmp_path / "s.launch.yaml"
    path.write_text(
        f"launch:\n- executable: {{cmd: '{sys.executable} {data_dir}/stubborn.py', name: stub, "
        "sigterm_timeout: 60, sigkill_timeout: 60}\n"
    )
    lines = Lines()
    service = LaunchService(parse_launch_file(path), output=lines)
    thread, result = run_in_thread(service)
    lines.wait_for("[stub-1] ready")
    service.shutdown()
    lines.wait_for("process(es): SIGINT")
    service.shutdown()  # a second Ctrl-C: no 60 s waits
    thread.join(timeout=20)
    assert not thread.is_alive()
    assert result[0].process("stub-1").exits[0].stopped_with == "SIGKILL"


def test_environment_of_launched_processes(tmp_path):
    path = tmp_path / "e.launch.yaml"
    path.write_text(
        "launch:\n"
        "- set_env: {name: TETHER_LAUNCH_A, value: from-set-env}\n"
        "- unset_env: {name: TETHER_LAUNCH_GONE}\n"
        "- executable:\n"
        '    cmd: echo "$TETHER_LAUNCH_A/$TETHER_LAUNCH_B/${TETHER_LAUNCH_GONE:-unset}/$TETHER_LAUNCH_KEPT"\n'
        "    shell: true\n"
        "    name: env\n"
        "    env: [{name: TETHER_LAUNCH_B, value: from-env}]\n"
    )
    lines = Lines()
    environ = {"PATH": "/usr/bin:/bin", "TETHER_LAUNCH_GONE": "x", "TETHER_LAUNCH_KEPT": "inherited"}
    summary = LaunchService(parse_launch_file(path), output=lines, environ=environ).run()
    assert summary.ok
    assert "[env-1] from-set-env/from-env/unset/inherited" in lines.lines
