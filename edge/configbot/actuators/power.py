"""Jetson power mode through `nvpmodel`, where it exists (a knob of the platform, not of a node).

`nvpmodel -q` names the current mode, `nvpmodel -m <id>` switches (root only); the mode names and
ids come from the hardware profile (`hardware_profiles/*.yaml`), the knob's `profile:` or the
device's own. Off a Jetson there is no nvpmodel: the knob is reported off and tuning goes on.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Mapping
from typing import Any

from tether.edge.configbot.actuators.base import ActuationError, Actuator, ActuatorContext
from tether.edge.configbot.spec import Knob

__all__ = ["PowerModeActuator", "query_power_mode"]

_MODE = re.compile(r"NV Power Mode:\s*(\S+)")


def query_power_mode(exe: str | None = None) -> str | None:
    """The current nvpmodel mode's name, or None without nvpmodel (or when it does not answer)."""
    exe = exe or shutil.which("nvpmodel")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "-q"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = _MODE.search(out.stdout)
    return m.group(1) if out.returncode == 0 and m else None


class PowerModeActuator(Actuator):
    kinds = ("power_mode",)

    def __init__(self, knobs: list[Knob], ctx: ActuatorContext, *, nvpmodel: str | None = None) -> None:
        super().__init__(knobs, ctx)
        self.exe = nvpmodel
        self.ids: dict[str, int] = {}
        self._before: str | None = None

    def start(self) -> None:
        from tether.edge.hardware import HardwareError, load_profile, read_device_profile

        self.exe = self.exe or shutil.which("nvpmodel")
        if self.exe is None:
            self.unavailable = "nvpmodel is not on PATH (not a Jetson): the power_mode knob is off"
            return
        knob = next(iter(self.knobs.values()))
        try:
            profile = load_profile(knob.profile) if knob.profile else None
            if profile is None:
                device = read_device_profile(nvpmodel=self.exe)
                profile = device.profile if device else None
        except HardwareError as exc:
            self.unavailable = f"power_mode knob is off: {exc}"
            return
        if profile is None:
            self.unavailable = (
                "power_mode needs profile: <name> (this device's model matches no hardware profile)"
            )
            return
        for choice in knob.choices or []:
            try:
                mode = profile.mode(str(choice))
            except HardwareError as exc:
                self.unavailable = f"power_mode knob is off: {exc}"
                return
            if mode.nvpmodel_id is None:
                self.unavailable = (
                    f"power mode {mode.name} of {profile.name} has no nvpmodel_id; add it to the profile"
                )
                return
            self.ids[str(choice)] = mode.nvpmodel_id
        self._before = query_power_mode(self.exe)

    def read(self) -> dict[str, Any]:
        return {key: query_power_mode(self.exe) for key in self.knobs}

    def apply(self, values: Mapping[str, Any]) -> None:
        for _key, value in values.items():
            if value is None:
                continue
            mode_id = self.ids.get(str(value))
            if mode_id is None:
                raise ActuationError(f"power mode {value!r} is not one of {sorted(self.ids)}")
            out = subprocess.run(
                [self.exe or "nvpmodel", "-m", str(mode_id)], capture_output=True, text=True, timeout=30
            )
            if out.returncode != 0:
                raise ActuationError(f"nvpmodel -m {mode_id} failed ({out.returncode}): {out.stderr.strip()}")

    def close(self) -> None:
        if self._before is not None and self._before in self.ids:
            try:
                self.apply({"power_mode": self._before})
            except (ActuationError, OSError, subprocess.SubprocessError):
                pass
