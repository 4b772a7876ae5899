"""Hardware profiles, the nvpmodel reading on a Jetson (faked: there is no Jetson here), and the
hardware-profile emulation through the launcher, which must really limit the stack's CPU."""

from __future__ import annotations

import os
import sys
import threading
import time

import psutil
import pytest

from tether.edge.cgroups import CgroupError, detect_layout
from tether.edge.hardware import (
    PROFILES_DIR,
    HardwareError,
    list_profiles,
    load_profile,
    parse_profile_mode,
    read_device_profile,
)
from tether.edge.yamlconfig import ConfigFileError


def test_profiles_load_with_their_modes():
    assert {"orin-agx-64", "orin-nx-16", "orin-nano-8", "x86-dev"} <= set(list_profiles())
    pm = parse_profile_mode("orin-agx-64:15W")
    assert pm.mode.online_cores == 4 and pm.profile.cpu.max_cores == 12
    assert pm.emulated_cores(6) == pytest.approx(2.0)
    assert parse_profile_mode("orin-nano-8").mode.name == "15W"  # the default mode
    assert not load_profile("orin-agx-64").power_modes[0].verified  # unverified values say so
    with pytest.raises(HardwareError, match="orin-agx-64"):
        parse_profile_mode("orin-agx-128")
    with pytest.raises(HardwareError, match="MAXN, 15W, 30W, 50W"):
        parse_profile_mode("orin-agx-64:99W")


def test_a_profile_with_an_error_names_its_line(tmp_path):
    src = (PROFILES_DIR / "orin-nx-16.yaml").read_text()
    bad = src.replace("online_cores: 4, budget_w: 10", "online_cores: 16, budget_w: 10")
    path = tmp_path / "x.yaml"
    path.write_text(bad)
    line = next(i for i, s in enumerate(bad.splitlines(), 1) if "online_cores: 16" in s)
    with pytest.raises(ConfigFileError) as info:
        load_profile(str(path))
    assert f"x.yaml:{line}:" in str(info.value)
    assert "online_cores=16 > cpu.max_cores=8" in str(info.value)
    path.write_text(src.replace("default_mode: MAXN", "default_mode: TURBO"))
    with pytest.raises(ConfigFileError, match="default_mode must be one of the power modes"):
        load_profile(str(path))


def test_on_a_jetson_the_profile_comes_from_nvpmodel(tmp_path):
    # Fakes: a device-tree model file and an `nvpmodel` script (no Jetson, no nvpmodel on this machine).
    model = tmp_path / "model"
    model.write_text("NVIDIA Jetson AGX Orin Developer Kit\x00")
    nvp = tmp_path / "nvpmodel"
    nvp.write_text("#!/bin/sh\necho 'NV Power Mode: 30W'\necho 2\n")
    nvp.chmod(0o755)
    pm = read_device_profile(model_file=model, nvpmodel=str(nvp))
    assert pm is not None and pm.spec == "orin-agx-64:30W"
    assert read_device_profile(model_file=tmp_path / "absent") is None
    model.write_text("Some x86 board")
    assert read_device_profile(model_file=model, nvpmodel=str(nvp)) is None


def _writable() -> bool:
    try:
        return os.access(detect_layout().cpu, os.W_OK)
    except CgroupError:
        return False


LAUNCH = """\
launch:
- arg: {name: hardware_profile, default: ""}
- arg: {name: stack, default: robot}
- executable: {cmd: "%(py)s -c 'while True: pass'", name: burn_a}
- executable: {cmd: "%(py)s -c 'while True: pass'", name: burn_b}
- executable: {cmd: "%(py)s -c 'while True: pass'", name: sim}
"""


@pytest.mark.serial
@pytest.mark.skipif(not _writable(), reason="needs a writable cgroup cpu hierarchy (root here)")
def test_hardware_profile_emulation_really_limits_the_stack(tmp_path):
    """x86-dev:quarter gives the stack a quarter of this machine: two busy processes together get at most
    ~0.25 x cores and are throttled by the stack's quota; the simulator is left out of the stack."""
    from tether.launch import LaunchService, ProcessHook, load_hooks, parse_launch_file

    path = tmp_path / "burn.launch.yaml"
    path.write_text(LAUNCH % {"py": sys.executable})
    stack = f"emu{os.getpid()}"
    desc = parse_launch_file(path, {"hardware_profile": "x86-dev:quarter", "stack": stack})
    hooks = load_hooks(desc.launch_args)
    assert any(type(h).__name__ == "HardwareProfileHook" for h in hooks)
    pids: dict[str, int] = {}

    class Pids(ProcessHook):
        def on_start(self, info, pid):
            pids[info.label.rsplit("-", 1)[0]] = pid

    service = LaunchService(desc, hooks=[Pids(), *hooks], duration=4.0, output=lambda line: None)
    measured: dict[str, float] = {}

    def measure():
        time.sleep(1.0)  # started, placed
        procs = {n: psutil.Process(p) for n, p in pids.items()}
        t0 = {n: sum(p.cpu_times()[:2]) for n, p in procs.items()}
        w0 = time.monotonic()
        time.sleep(2.0)
        for n, p in procs.items():
            measured[n] = (sum(p.cpu_times()[:2]) - t0[n]) / (time.monotonic() - w0)
        stack_dir = detect_layout().cpu / "tether" / stack
        measured["in_stack"] = sorted(d.name for d in stack_dir.iterdir() if d.is_dir())
        stat = dict(line.split() for line in (stack_dir / "cpu.stat").read_text().splitlines())
        measured["throttled_periods"] = int(stat["nr_throttled"])

    t = threading.Thread(target=measure)
    t.start()
    try:
        service.run()
    finally:
        t.join()
        for h in hooks:
            getattr(h, "close", lambda: None)()
    quota = 0.25 * os.cpu_count()
    stack_cpu = measured["burn_a"] + measured["burn_b"]
    assert measured["in_stack"] == ["burn_a", "burn_b"]  # the simulator is the world, not in the stack
    assert stack_cpu < quota * 1.3, measured  # without the quota they would take all the cores
    # The quota bit: the stack wanted more than its share (two busy loops) and was held back, in
    # most 100 ms periods, whatever else this machine is running.
    assert measured["throttled_periods"] >= 10, measured
    assert not (detect_layout().cpu / "tether" / stack).exists()  # removed at the end
