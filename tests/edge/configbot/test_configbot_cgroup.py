"""The CPU actuator on real cgroups: a busy node is throttled to its quota; groups go away on exit, also
after a crash; without permission the actuator says why and the other knobs go on."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from tests_helpers import wait_for

from tether.edge.cgroups import CgroupError, CgroupManager, detect_layout

try:
    LAYOUT = detect_layout()
except CgroupError:
    LAYOUT = None

needs_cgroups = pytest.mark.skipif(
    LAYOUT is None or os.geteuid() != 0, reason="needs a writable cgroup cpu controller (root)"
)


@needs_cgroups
@pytest.mark.serial
def test_cpu_quota_throttles_a_busy_node_to_its_quota(bus, workers, probe, spec_file, stack):
    from tether.edge.configbot.actuators import ActuatorContext, CgroupActuator
    from tether.edge.configbot.profiler import Profiler
    from tether.edge.configbot.spec import load_spec

    spec = load_spec(
        spec_file(f"""
        name: quota
        stack: {stack}
        constraints: [{{metric: "busy:cpu.cores", max: 2}}]
        knobs: [{{node: busy, kind: cpu_quota, min: 0.05, max: 2}}]
        """)
    )
    workers.start("busy", rate=1000.0, work_ms=50.0)  # never sleeps: takes all the CPU it is given
    profiler = Profiler(probe, spec)
    act = CgroupActuator(spec.knobs, ActuatorContext(spec, probe, profiler))
    try:
        assert wait_for(lambda: profiler.nodes["/busy"].pid is not None), "no telemetry from the busy node"
        act.start()
        assert act.unavailable is None, act.unavailable
        pid = profiler.nodes["/busy"].pid
        act.node_restarted("/busy", pid, {})
        group_dir = act.manager.layout.cpu / act.manager.path(act.groups["/busy"])
        assert str(pid) in (group_dir / "cgroup.procs").read_text().split()
        # The test measures throttling, not fair share: give the stack a heavy weight, so other load on a
        # shared machine cannot keep the node below its quota.
        act.manager.set_weight(None, 50.0)
        for quota in (0.25, 0.5):
            act.apply({"busy:cpu_quota": quota})
            assert act.read()["busy:cpu_quota"] == pytest.approx(quota, rel=0.01)
            time.sleep(1.0)
            u0, t0 = act.usage("/busy"), time.monotonic()
            time.sleep(4.0)
            share = (act.usage("/busy") - u0) / (time.monotonic() - t0)
            assert share == pytest.approx(quota, rel=0.15), f"quota {quota} cores, measured {share:.3f}"
    finally:
        act.close()
        profiler.close()
    assert not group_dir.exists(), "the node's group must be removed at close"
    assert not (LAYOUT.cpu / "tether" / stack).exists()


@needs_cgroups
def test_groups_are_removed_after_the_owner_crashes(stack):
    code = textwrap.dedent(f"""
        import subprocess, time
        from tether.edge.cgroups import CgroupManager
        from tether.edge.configbot.actuators.cgroup import start_guard
        m = CgroupManager({stack!r})
        node = subprocess.Popen(["sleep", "60"])  # a node process, as ConfigBot places them (not itself)
        m.place("node", node.pid)
        guard = start_guard(m.state_dir)
        print(guard.pid, node.pid, flush=True)
        time.sleep(60)
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    guard_pid, node_pid = map(int, p.stdout.readline().split())
    group = LAYOUT.cpu / "tether" / stack
    try:
        assert str(node_pid) in group.joinpath("node", "cgroup.procs").read_text().split()
        p.send_signal(signal.SIGKILL)  # no finally, no atexit: only the guard can clean up
        p.wait()
        assert wait_for(lambda: not group.exists(), timeout=15), f"{group} outlived its owner's crash"
        assert wait_for(lambda: not os.path.exists(f"/proc/{guard_pid}") or _zombie(guard_pid), timeout=5)
    finally:
        os.kill(node_pid, signal.SIGKILL)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@needs_cgroups
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux) to drop root")
def test_without_cgroup_permission_the_other_knobs_go_on(tmp_path, stack):
    spec_text = textwrap.dedent(f"""
        name: noperm
        stack: {stack}
        constraints: [{{rate: /out, min: 1}}]
        knobs:
          - {{node: worker, kind: cpu_quota, min: 0.1, max: 1}}
          - {{node: worker, kind: parameter, name: work_ms, min: 1, max: 10}}
        """)
    code = textwrap.dedent(f"""
        import json, tempfile
        from tether.edge.configbot.actuators import ActuatorContext, Applier, build_actuators
        from tether.edge.configbot.spec import load_spec
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write({spec_text!r})
        spec = load_spec(f.name)
        applier = Applier(build_actuators(ActuatorContext(spec, None, None)))
        messages = applier.start()
        print(json.dumps({{"messages": messages, "keys": applier.knob_keys(), "off": applier.off}}))
    """)
    # setpriv (util-linux) drops to user nobody, who may not write the cgroup hierarchy. Where nobody
    # cannot read this checkout (a clone in a private temporary folder), root runs it instead in a
    # mount namespace of its own with the cpu hierarchy read-only: the writes are refused the same way.
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable]
    probe = subprocess.run([*nobody, "-c", "import tether.edge"], capture_output=True, timeout=60, cwd="/")
    if probe.returncode == 0:
        cmd = [*nobody, "-c", code]
    else:
        assert shutil.which("unshare"), "neither user nobody nor a private mount namespace is available"
        remount = f'mount -o remount,bind,ro {LAYOUT.cpu} && exec "$0" -c "$1"'
        cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c", remount, sys.executable, code]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd="/")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout.strip().splitlines()[-1])
    assert doc["keys"] == ["worker:parameter:work_ms"]
    (msg,) = doc["messages"]
    assert "no permission" in msg and "tuning goes on with the other knobs" in msg
    assert doc["off"] == {"worker:cpu_quota": msg}


@needs_cgroups
def test_a_process_with_realtime_threads_is_placed_without_them(stack):
    # zenoh's shared-memory watchdog threads run SCHED_FIFO; cgroup v1 refuses the whole process (EINVAL)
    # in a group without an RT budget, so its other threads go in one by one.
    code = textwrap.dedent("""
        import os, threading, time
        def rt():
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
            time.sleep(60)
        threading.Thread(target=rt, daemon=True).start()
        print("ready", flush=True)
        time.sleep(60)
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    manager = CgroupManager(stack)
    try:
        assert p.stdout.readline().strip() == "ready"
        tids = {int(t) for t in os.listdir(f"/proc/{p.pid}/task")}
        rt = {t for t in tids if os.sched_getscheduler(t) == os.SCHED_FIFO}
        assert rt, "the helper thread should be realtime"
        assert manager.place("n", p.pid) == [p.pid]
        if LAYOUT.version == 1:
            inside = {int(t) for t in (LAYOUT.cpu / "tether" / stack / "n" / "tasks").read_text().split()}
            assert inside == tids - rt
    finally:
        p.kill()
        p.wait()
        manager.close()
