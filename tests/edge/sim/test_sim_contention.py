"""The contention scenario's background job: independent busy processes, started and stopped by pid."""

from __future__ import annotations

import os
import time

import psutil

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
