"""Hardware-profile emulation: the robot stack gets a power mode's share of this machine's CPU.

`tether launch launch/sim_robot.launch.yaml hardware_profile:=orin-agx-64:15W` activates the
launch hook below (entry-point group `tether.launch_hooks`). It creates the parent cgroup
`tether/<stack>`, sets its quota to (online cores of the mode / the profile's maximum) x this
machine's cores, and places each launched node in `tether/<stack>/<node>`. So 15W on an AGX
Orin (4 of 12 cores) gives the stack a third of this machine. Neither the absolute core count
nor the clock speed is emulated: a third of two fast x86 cores is not four Cortex-A78AE cores.

The simulator is the world, not the robot: it is left out of the stack (launch argument
`hardware_profile_exclude`, default `sim`), so the world does not slow down with the robot.
On a real Jetson nothing is emulated: the profile and mode come from the device (nvpmodel).
"""

from __future__ import annotations

import atexit
import os
import re
import subprocess
import sys

from tether.edge.cgroups import CgroupError, CgroupManager, CgroupPermissionError, detect_layout
from tether.edge.hardware import HardwareError, ProfileMode, parse_profile_mode, read_device_profile
from tether.launch.hooks import ProcessHook, ProcessInfo

__all__ = ["HardwareProfileHook", "launch_hook", "set_power_mode", "stack_quota_cores"]


def stack_quota_cores(pm: ProfileMode, host_cores: int | None = None) -> float:
    """The stack's quota (cores) on this machine for a profile mode."""
    return pm.emulated_cores(host_cores or os.cpu_count() or 1)


def _say(message: str) -> None:
    print(f"[INFO] [hardware_profile]: {message}", file=sys.stderr, flush=True)


def _group_name(info: ProcessInfo) -> str:
    """The node's name; for a plain executable its launch name (the label without the '-N' start count)."""
    name = info.node_name or info.exec or re.sub(r"-\d+$", "", info.label)
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:64]


class HardwareProfileHook(ProcessHook):
    """Places each launched process in tether/<stack>/<node> under a stack quota (None: no quota)."""

    def __init__(self, stack: str, quota_cores: float | None, exclude: set[str], label: str) -> None:
        self.stack = stack
        self.exclude = exclude
        self.manager = CgroupManager(stack)
        self.quota_cores = quota_cores
        self.manager.set_quota(None, quota_cores)
        self._groups: dict[int, str] = {}
        atexit.register(self.close)
        limit = "no quota" if quota_cores is None else f"quota {quota_cores:.2f} of {os.cpu_count()} cores"
        _say(f"{label}: stack cgroup {self.manager.path()} (v{self.manager.layout.version}) with {limit}")

    def on_start(self, info: ProcessInfo, pid: int) -> None:
        group = _group_name(info)
        if {info.node_name, info.exec, group} & self.exclude:
            return
        self.manager.place(group, pid)
        self._groups[pid] = group
        # The stack group competes as one entity with every process outside it: weight n keeps the
        # n nodes' fair share against a background job (the quota, not the weight, is the emulation).
        self.manager.set_weight(None, float(max(1, len(set(self._groups.values())))))

    def on_exit(self, info: ProcessInfo, pid: int, returncode: int) -> None:
        group = self._groups.pop(pid, None)
        if group is not None and group not in self._groups.values():
            self.manager.remove(group)

    def close(self) -> None:
        """Remove the stack's groups (also run at the launcher's exit)."""
        self.manager.close()


def launch_hook(launch_args: dict) -> HardwareProfileHook | None:
    """The `tether.launch_hooks` factory: active when `hardware_profile` is set, or when the launched
    scenario names one (power_drop does); None otherwise."""
    spec = (launch_args.get("hardware_profile") or "").strip()
    explicit = bool(spec)
    if not spec and launch_args.get("scenario"):
        from tether.edge.sim.scenario import ScenarioError, load_scenario

        try:
            spec = load_scenario(launch_args["scenario"]).hardware_profile or ""
        except ScenarioError:
            return None  # the simulator reports a bad scenario itself
    if not spec:
        return None
    stack = launch_args.get("stack") or "robot"
    exclude = {
        s.strip() for s in (launch_args.get("hardware_profile_exclude", "sim") or "").split(",") if s.strip()
    }
    try:
        device = read_device_profile()
        pm = parse_profile_mode(spec)
    except HardwareError as exc:
        raise HardwareError(f"hardware_profile:={spec}: {exc}") from None
    try:
        if device is not None:
            # On the device itself the cores really are offline: place nodes, limit nothing.
            return HardwareProfileHook(stack, None, exclude, f"on device {device.spec} (read from nvpmodel)")
        return HardwareProfileHook(stack, stack_quota_cores(pm), exclude, f"emulating {pm.spec}")
    except CgroupPermissionError as exc:
        if explicit:
            raise
        _say(f"scenario asks for {spec} but it cannot be emulated here: {exc}")
        return None


def set_power_mode(stack: str, spec: str) -> float | None:
    """Switch the running stack to another power mode (the power_drop scenario); returns its quota in cores.

    Emulated: rewrites the quota of tether/<stack> (created by the launch hook). On a Jetson:
    `nvpmodel -m <id>`, which takes cores offline for real (root only), and returns None.
    """
    pm = parse_profile_mode(spec)
    if read_device_profile() is not None:
        if pm.mode.nvpmodel_id is None:
            raise HardwareError(f"power mode {pm.spec} has no nvpmodel_id; add it to the profile")
        subprocess.run(["nvpmodel", "-m", str(pm.mode.nvpmodel_id)], check=True, timeout=30)
        return None
    cores = stack_quota_cores(pm)
    if not detect_layout().cpu.joinpath("tether", stack).is_dir():
        raise CgroupError(f"no stack cgroup tether/{stack}: launch with hardware_profile:=NAME[:MODE] first")
    manager = CgroupManager(stack, join=True)
    try:
        manager.set_quota(None, cores)
    finally:
        manager.close()
    return cores
