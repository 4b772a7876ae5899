"""The contention scenario's background job: independent busy processes, started and stopped by pid."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tether.edge.sim.contention import Contention


def test_workers_are_independent_busy_jobs_and_stop_by_pid():
    job = Contention(workers_per_core=1.0, cores=2)
    try:
        pids = job.start()
        assert len(pids) == 2 and job.start() == pids  # starting twice starts nothing more
        # Each worker leads its own session: under autogroup scheduling a session shares one CPU
        # share, so workers left in the caller's session would compete as one job.
        sessions = {os.getsid(pid) for pid in pids}
        assert len(sessions) == 2 and os.getsid(0) not in sessions
        time.sleep(1.5)
        for pid in pids:
            p = psutil.Process(pid)
            assert p.nice() == 0
            cpu = p.cpu_times()
            assert cpu.user + cpu.system > 0.05, f"worker {pid} is not busy: {cpu}"
    finally:
        job.stop()
    assert not job.running
    assert not any(
        psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in pids
    )


def _cpu_cgroup(pid: int) -> str:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, ctl, path = line.split(":", 2)
        if "cpu" in ctl.split(",") or ctl == "":
            return path
    return ""


def _writable() -> bool:
    from tether.edge.cgroups import CgroupError, detect_layout

    try:
        return os.access(detect_layout().cpu, os.W_OK)
    except CgroupError:
        return False


@pytest.mark.skipif(not _writable(), reason="needs a writable cgroup cpu hierarchy (root here)")
def test_workers_join_the_stack_cgroup_one_group_each(tmp_path):
    """On the robot's (emulated) computer: inside tether/<stack>, beside the nodes, out of their knobs."""
    from tether.edge.cgroups import CgroupManager

    stack = f"tcont{os.getpid()}"
    with CgroupManager(stack, state_dir=tmp_path) as robot:
        robot.place("navigation", os.getpid(), children=False)  # the stack as the launch hook makes it
        try:
            job = Contention(workers_per_core=1.0, cores=2, stack=stack)
            try:
                pids = job.start()
                groups = [_cpu_cgroup(pid) for pid in pids]
                assert groups == [f"/tether/{stack}/background-0", f"/tether/{stack}/background-1"]
                assert job.cgroups == [g.lstrip("/") for g in groups]
            finally:
                job.stop()
            assert job.cgroups == []
            assert not (robot.layout.cpu / "tether" / stack / "background-0").exists()  # removed at stop
        finally:
            for h in robot.layout.hierarchies:  # back to the root group, so the stack can go
                (h / "cgroup.procs").write_text(str(os.getpid()))


def test_without_a_stack_cgroup_workers_stay_outside():
    job = Contention(workers_per_core=1.0, cores=1, stack=f"absent{os.getpid()}")
    try:
        (pid,) = job.start()
        assert job.cgroups == [] and "background" not in _cpu_cgroup(pid)
    finally:
        job.stop()


def test_workers_end_with_the_process_that_started_them():
    """A worker outlives a SIGKILLed simulator by a moment only: it watches its parent."""
    code = (
        "from tether.edge.sim.contention import Contention; import time; "
        "c = Contention(1.0, cores=1); print(c.start()[0], flush=True); time.sleep(60)"
    )
    starter = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        pid = int(starter.stdout.readline())
        assert psutil.pid_exists(pid)
    finally:
        starter.kill()
        starter.wait()
    deadline = time.monotonic() + 10
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, f"worker {pid} outlived its starter"
        time.sleep(0.1)
