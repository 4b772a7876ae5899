"""The non-cgroup actuators on real nodes: a rate cap caps, parameters are set all-or-none, a failed
configuration rolls back across actuators, affinity pins every thread, and the power mode goes through
nvpmodel (a fake nvpmodel script: there is no Jetson here)."""

from __future__ import annotations

import os
import time

import pytest
from tests_helpers import wait_for

from tether.edge.configbot.actuators import (
    ActuationError,
    ActuatorContext,
    AffinityActuator,
    Applier,
    ParameterActuator,
    PowerModeActuator,
)
from tether.edge.configbot.profiler import Profiler
from tether.edge.configbot.spec import load_spec


def _demo(bus, workers, entry: str, *ros_args: str):
    import subprocess
    import sys

    code = f"import sys; from tether.bus.demo import {entry}; {entry}(sys.argv[1:])"
    p = subprocess.Popen(
        [sys.executable, "-c", code, "--ros-args", *ros_args],
        env=bus.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    workers.procs.append(p)
    return p


def test_rate_cap_caps_what_the_subscriber_receives(bus, workers, probe, spec_file):
    spec = load_spec(
        spec_file("""
        name: cap
        constraints: [{metric: "listener:rate.recv.chatter", min: 1}]
        knobs: [{node: listener, kind: rate_cap, topic: chatter, min: 1, max: 30}]
        """)
    )
    _demo(bus, workers, "talker_main", "-p", "rate:=50.0")
    _demo(bus, workers, "listener_main")
    profiler = Profiler(probe, spec)
    act = ParameterActuator(spec.knobs, ActuatorContext(spec, probe, profiler))
    key = "listener:rate_cap:chatter"
    try:
        assert wait_for(lambda: profiler.nodes["/listener"].pid is not None), "no telemetry from the listener"

        def recv(seconds: float) -> float | None:
            t0 = time.monotonic()
            time.sleep(seconds)
            return profiler.metric("/listener", "rate.recv.chatter", t0, time.monotonic())

        assert wait_for(lambda: (recv(2.0) or 0) > 30), "the listener should first get ~50 Hz"
        assert act.read()[key] is None  # 0 = no cap, reported as "not limited"
        act.apply({key: 5.0})
        assert act.param_name(key) == "rate_cap.chatter"
        assert act.read()[key] == 5.0
        time.sleep(1.0)
        capped = recv(3.0)
        assert capped is not None and 3.5 <= capped <= 6.0, f"capped at 5 Hz, received {capped}"
        act.apply({key: None})  # lifting the cap
        time.sleep(1.0)
        assert (recv(2.0) or 0) > 30
    finally:
        profiler.close()


def test_parameters_are_set_all_or_none_and_a_failed_config_rolls_back(
    bus, workers, probe, spec_file, tmp_path
):
    spec = load_spec(
        spec_file("""
        name: atomic
        constraints: [{rate: /w/out, min: 1}]
        knobs:
          - {node: /w/w, kind: parameter, name: work_ms, min: 0, max: 50}
          - {node: /w/w, kind: parameter, name: rate, min: 1, max: 100}
          - {node: /w/w, kind: affinity, choices: ["0", "0-1"]}
        """)
    )
    workers.start("w", ns="/w", rate=20.0, work_ms=1.0)
    profiler = Profiler(probe, spec)
    ctx = ActuatorContext(spec, probe, profiler)
    params = ParameterActuator([k for k in spec.knobs if k.kind == "parameter"], ctx)
    aff = AffinityActuator([k for k in spec.knobs if k.kind == "affinity"], ctx)
    applier = Applier([params, aff])
    try:
        assert wait_for(lambda: profiler.nodes["/w/w"].pid is not None)
        applier.start()
        assert applier.remember_initial() == {
            "/w/w:parameter:work_ms": 1.0,
            "/w/w:parameter:rate": 20.0,
            "/w/w:affinity": "0-1" if os.cpu_count() == 2 else applier.initial["/w/w:affinity"],
        }
        applier.apply({"/w/w:parameter:work_ms": 3.0, "/w/w:parameter:rate": 10.0, "/w/w:affinity": "0"})
        assert params.read() == {"/w/w:parameter:work_ms": 3.0, "/w/w:parameter:rate": 10.0}
        pid = profiler.nodes["/w/w"].pid
        tids = os.listdir(f"/proc/{pid}/task")
        assert len(tids) > 1 and all(os.sched_getaffinity(int(t)) == {0} for t in tids), "every thread pinned"
        # The node refuses rate=0.01 (below its declared minimum): neither parameter may change ...
        with pytest.raises(ActuationError, match="refused"):
            params.apply({"/w/w:parameter:work_ms": 7.0, "/w/w:parameter:rate": 0.01})
        assert params.read() == {"/w/w:parameter:work_ms": 3.0, "/w/w:parameter:rate": 10.0}
        # ... and a configuration failing in one actuator is undone in the others that went first.
        with pytest.raises(ActuationError):
            applier.apply(
                {"/w/w:parameter:work_ms": 9.0, "/w/w:affinity": "0-1", "/w/w:parameter:rate": 0.01}
            )
        assert params.read()["/w/w:parameter:work_ms"] == 3.0
        assert os.sched_getaffinity(pid) == {0}
        assert applier.current["/w/w:parameter:work_ms"] == 3.0
    finally:
        applier.close()
        profiler.close()
    assert os.sched_getaffinity(pid) == set(range(os.cpu_count() or 1)), "affinity restored at close"


def test_power_mode_goes_through_nvpmodel(tmp_path, spec_file, monkeypatch):
    # A fake nvpmodel (no Jetson here): it keeps the mode id in a file, as `nvpmodel -m` would switch it.
    state = tmp_path / "mode"
    state.write_text("0")
    fake = tmp_path / "nvpmodel"
    fake.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = "-m" ]; then echo "$2" > {state}; exit 0; fi\n'
        f'case $(cat {state}) in 0) echo "NV Power Mode: MAXN";; 1) echo "NV Power Mode: 15W";; '
        f'2) echo "NV Power Mode: 30W";; esac\n'
    )
    fake.chmod(0o755)
    spec = load_spec(
        spec_file("""
        name: power
        constraints: [{rate: /cmd_vel, min: 1}]
        knobs: [{kind: power_mode, profile: orin-agx-64, choices: [15W, 30W, MAXN]}]
        """)
    )
    act = PowerModeActuator(spec.knobs, ActuatorContext(spec, None, None), nvpmodel=str(fake))
    act.start()
    assert act.unavailable is None
    assert act.read() == {"power_mode": "MAXN"}
    act.apply({"power_mode": "15W"})
    assert state.read_text().strip() == "1" and act.read() == {"power_mode": "15W"}
    with pytest.raises(ActuationError):
        act.apply({"power_mode": "50W"})  # not offered by the knob
    act.close()
    assert act.read() == {"power_mode": "MAXN"}, "the mode found at start is restored"
    off = PowerModeActuator(spec.knobs, ActuatorContext(spec, None, None), nvpmodel=None)
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    off.start()
    assert off.unavailable and "nvpmodel is not on PATH" in off.unavailable
