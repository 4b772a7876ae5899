"""Hardware profiles (`hardware_profiles/*.yaml`): a platform's cores, memory, GPU and power modes.

A profile and mode, written `NAME[:MODE]` (`orin-agx-64:15W`), say how much compute the robot
stack has. Off the device, the emulation (`tether.edge.emulation`) gives the stack the share
of this machine's CPU that the mode's online cores are of the profile's maximum; on a real
Jetson the profile and mode are read from the device (`/proc/device-tree/model`, `nvpmodel -q`).
Values not checked against NVIDIA's documentation carry `verified: false` in the files.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tether.edge.yamlconfig import ConfigFileError, parse_yaml, validate_data

__all__ = [
    "HardwareError",
    "HardwareProfile",
    "PROFILES_DIR",
    "PowerMode",
    "ProfileMode",
    "list_profiles",
    "load_profile",
    "parse_profile_mode",
    "read_device_profile",
]

PROFILES_DIR = Path(__file__).resolve().parent.parent / "hardware_profiles"


class HardwareError(ValueError):
    """A profile or mode is unknown or a profile file breaks a rule. Not recoverable: fix the name or file."""


class CpuSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    model: str
    max_cores: int = Field(ge=1, le=1024)
    verified: bool = False


class GpuSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    cuda_cores: int | None = Field(None, ge=0)
    tensor_cores: int | None = Field(None, ge=0)
    dla: int | None = Field(None, ge=0)
    sparse_int8_tops: float | None = Field(None, ge=0)
    verified: bool = False


class PowerMode(BaseModel):
    """One power mode: the cores it keeps online and its power budget (W; None = unconstrained)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(min_length=1)
    online_cores: int = Field(ge=1)
    nvpmodel_id: int | None = Field(None, ge=0)
    budget_w: float | None = Field(None, gt=0)
    verified: bool = False


class HardwareProfile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    description: str = ""
    platform: Literal["jetson", "x86"]
    device_model: str | None = None
    cpu: CpuSpec
    memory_gb: float | None = Field(None, gt=0)
    gpu: GpuSpec | None = None
    default_mode: str
    power_modes: list[PowerMode] = Field(min_length=1)

    @model_validator(mode="after")
    def _modes_consistent(self) -> HardwareProfile:
        names = [m.name for m in self.power_modes]
        if len(set(names)) != len(names):
            raise ValueError(f"power mode names must be unique, but got {names}")
        if self.default_mode not in names:
            raise ValueError(
                f"default_mode must be one of the power modes {names}, but got {self.default_mode!r}"
            )
        return self

    def mode(self, name: str | None = None) -> PowerMode:
        """A power mode by name (None: the default mode)."""
        name = name or self.default_mode
        for m in self.power_modes:
            if m.name.lower() == name.lower():
                return m
        raise HardwareError(
            f"profile {self.name!r} has no power mode {name!r}; its modes: {', '.join(m.name for m in self.power_modes)}"
        )

    def cpu_share(self, mode: str | None = None) -> float:
        """online cores / max cores: the fraction of the platform's CPU the mode keeps."""
        return self.mode(mode).online_cores / self.cpu.max_cores


class ProfileMode(BaseModel):
    """A profile and one of its modes, as `NAME[:MODE]` names them."""

    model_config = ConfigDict(frozen=True)
    profile: HardwareProfile
    mode: PowerMode

    @property
    def spec(self) -> str:
        return f"{self.profile.name}:{self.mode.name}"

    def emulated_cores(self, host_cores: int) -> float:
        """The stack's CPU quota on this machine, in cores: the mode's share of `host_cores`."""
        return self.mode.online_cores / self.profile.cpu.max_cores * host_cores


def list_profiles(directory: Path = PROFILES_DIR) -> list[str]:
    return sorted(p.stem for p in directory.glob("*.yaml"))


def load_profile(name: str, directory: Path = PROFILES_DIR) -> HardwareProfile:
    """A profile by name (`orin-agx-64`) or path; validated, errors name the file and line."""
    path = Path(name) if name.endswith((".yaml", ".yml")) else directory / f"{name}.yaml"
    if not path.is_file():
        raise HardwareError(
            f"unknown hardware profile {name!r}; known: {', '.join(list_profiles(directory))} (in {directory})"
        )
    data, lines = parse_yaml(path)
    profile = validate_data(HardwareProfile, data, lines, path)
    for i, m in enumerate(profile.power_modes):
        if m.online_cores > profile.cpu.max_cores:
            raise ConfigFileError(
                path,
                lines.get(("power_modes", i)),
                f"power mode {m.name!r}: online_cores <= cpu.max_cores must hold, but got "
                f"online_cores={m.online_cores} > cpu.max_cores={profile.cpu.max_cores}",
            )
    if path.suffix and path.stem != profile.name and path.parent == directory:
        raise HardwareError(f"{path}: name {profile.name!r} must equal the file's name {path.stem!r}")
    return profile


def parse_profile_mode(spec: str, directory: Path = PROFILES_DIR) -> ProfileMode:
    """`NAME[:MODE]` -> the profile and mode (the profile's default mode when MODE is left out)."""
    name, _, mode = spec.strip().partition(":")
    if not name:
        raise HardwareError(
            f"a hardware profile is written NAME[:MODE], e.g. orin-agx-64:15W, but got {spec!r}"
        )
    profile = load_profile(name, directory)
    return ProfileMode(profile=profile, mode=profile.mode(mode or None))


_NVP_MODE = re.compile(r"NV Power Mode:\s*(\S+)")


def read_device_profile(
    model_file: Path = Path("/proc/device-tree/model"),
    nvpmodel: str | None = None,
    directory: Path = PROFILES_DIR,
) -> ProfileMode | None:
    """On a Jetson, its profile and current power mode (device model + `nvpmodel -q`); None elsewhere."""
    try:
        model = model_file.read_text(errors="replace").strip("\x00\n ")
    except OSError:
        return None
    candidates = [
        p
        for p in (load_profile(n, directory) for n in list_profiles(directory))
        if p.device_model and p.device_model in model
    ]
    if not candidates:
        return None
    # The most specific match ("Orin NX" before "Orin").
    profile = max(candidates, key=lambda p: len(p.device_model or ""))
    exe = nvpmodel or shutil.which("nvpmodel")
    if exe is None:
        raise HardwareError(f"device {model!r} is a Jetson but `nvpmodel` is not on PATH; install nvpmodel")
    out = subprocess.run([exe, "-q"], capture_output=True, text=True, timeout=10)
    match = _NVP_MODE.search(out.stdout)
    if out.returncode != 0 or match is None:
        raise HardwareError(
            f"`{exe} -q` did not report 'NV Power Mode: <name>' (exit {out.returncode}): {out.stdout!r}"
        )
    return ProfileMode(profile=profile, mode=profile.mode(match.group(1)))
