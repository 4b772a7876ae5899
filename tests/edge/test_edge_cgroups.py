"""The edge's cgroup module on this machine's real cgroups (v1 here: cpu and cpuacct hierarchies)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tether.edge.cgroups import CgroupError, CgroupManager, cleanup_stale, detect_layout

try:
    LAYOUT = detect_layout()
    WRITABLE = os.access(LAYOUT.cpu, os.W_OK)
except CgroupError:
    LAYOUT, WRITABLE = None, False

needs_cgroups = pytest.mark.skipif(not WRITABLE, reason="needs a writable cgroup cpu hierarchy (root here)")
BUSY = [sys.executable, "-c", "while True: pass"]


def _stack(tag: str) -> str:
    return f"t{tag}{os.getpid()}"


def _cgroup_of(pid: int) -> str:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, ctl, path = line.split(":", 2)
        if "cpu" in ctl.split(",") or (LAYOUT.version == 2 and ctl == ""):
            return path
    return ""


@needs_cgroups
def test_place_nests_moves_children_and_close_removes(tmp_path):
    state = tmp_path / "state"
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess,sys,time; "
            "c=subprocess.Popen([sys.executable,'-c','import time; time.sleep(60)']); time.sleep(60)",
        ]
    )
    try:
        time.sleep(0.5)  # let it start its child
        with CgroupManager(_stack("p"), state_dir=state) as m:
            moved = m.place("worker", parent.pid)
            assert len(moved) == 2  # the process and its child
            for pid in moved:
                assert _cgroup_of(pid) == f"/tether/{m.stack}/worker"
            assert sorted(m.pids("worker")) == sorted(moved)
            m.set_quota("worker", 0.5)
            assert m.quota("worker") == pytest.approx(0.5)
            m.set_quota("worker", None)
            assert m.quota("worker") is None
            m.set_weight(None, 3.0)
            assert m.weight() == pytest.approx(3.0, rel=0.01)
            assert (state / f"{m.run_id}.json").is_file()
            for h in m.layout.hierarchies:
                assert (h / "tether" / m.stack / "worker").is_dir()
        for h in LAYOUT.hierarchies:
            assert not (h / "tether" / m.stack).exists()
        assert not (state / f"{m.run_id}.json").exists()
        assert _cgroup_of(parent.pid) != f"/tether/{m.stack}/worker"  # moved out, still alive
        assert parent.poll() is None
    finally:
        parent.kill()
        parent.wait()


@needs_cgroups
def test_crashed_runs_are_cleaned_up_but_never_a_live_one(tmp_path):
    state = tmp_path / "state"
    live = CgroupManager(_stack("live"), state_dir=state)
    try:
        live_sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        live.place("n", live_sleeper.pid)
        # A run that crashes: it makes its groups, then dies by SIGKILL without closing.
        dead_stack = _stack("dead")
        crasher = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import os, signal, sys, time; from pathlib import Path; from tether.edge.cgroups import CgroupManager; "
                f"m = CgroupManager({dead_stack!r}, state_dir=Path({str(state)!r})); m.place('n', os.getpid()); "
                "print('ready', flush=True); time.sleep(60)",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert crasher.stdout.readline().strip() == "ready"
        os.kill(crasher.pid, signal.SIGKILL)
        crasher.wait()
        assert (LAYOUT.cpu / "tether" / dead_stack / "n").is_dir()  # left behind
        removed = cleanup_stale(state_dir=state)
        assert f"tether/{dead_stack}/n" in removed and f"tether/{dead_stack}" in removed
        for h in LAYOUT.hierarchies:
            assert not (h / "tether" / dead_stack).exists()
        assert (LAYOUT.cpu / "tether" / live.stack / "n").is_dir()  # the live run's groups stay
        assert _cgroup_of(live_sleeper.pid) == f"/tether/{live.stack}/n"
        # A second manager on the live stack is refused unless it joins.
        with pytest.raises(CgroupError, match="belongs to live run"):
            CgroupManager(live.stack, state_dir=state)
        joined = CgroupManager(live.stack, state_dir=state, join=True)
        joined.set_quota("n", 0.3)
        joined.close()
        assert (LAYOUT.cpu / "tether" / live.stack / "n").is_dir() and live.quota("n") == pytest.approx(0.3)
    finally:
        live_sleeper.kill()
        live_sleeper.wait()
        live.close()


@needs_cgroups
@pytest.mark.serial
def test_a_quota_really_throttles_a_busy_process(tmp_path):
    with CgroupManager(_stack("q"), state_dir=tmp_path) as m:
        busy = subprocess.Popen(BUSY)
        try:
            m.place("busy", busy.pid)
            m.set_quota("busy", 0.25)
            time.sleep(0.3)
            u0, t0 = m.usage("busy"), time.monotonic()
            time.sleep(2.0)
            share = (m.usage("busy") - u0) / (time.monotonic() - t0)
            assert 0.12 < share < 0.32, share  # a quarter of a core, not a whole one
            assert m.throttled("busy")[0] > 0
        finally:
            busy.kill()
            busy.wait()


def test_cgroup_v2_files_are_written_as_the_kernel_expects(tmp_path):
    # A fake cgroup2 tree (regular files): the v2 cpu controller is not available on this machine.
    root = tmp_path / "cg"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (root / "cgroup.subtree_control").write_text("")
    m = CgroupManager("s2", root=root, state_dir=tmp_path / "state")
    assert m.layout.version == 2 and m.layout.hierarchies == (root,)
    assert (root / "cgroup.subtree_control").read_text() == "+cpu"
    (root / "tether" / "cgroup.subtree_control").write_text("")
    (root / "tether" / "s2").mkdir(exist_ok=True)
    m.set_quota(None, 1.5)
    assert (root / "tether" / "s2" / "cpu.max").read_text() == "150000 100000"
    assert m.quota() == pytest.approx(1.5)
    m.set_quota(None, None)
    assert (root / "tether" / "s2" / "cpu.max").read_text() == "max 100000"
    m.set_weight(None, 4)
    assert (root / "tether" / "s2" / "cpu.weight").read_text() == "400"
    with pytest.raises(CgroupError, match="positive number of cores"):
        m.set_quota(None, -1)
    with pytest.raises(CgroupError, match="must match"):
        m.path("no/slashes")
