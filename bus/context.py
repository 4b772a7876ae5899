"""The process's bus context: one transport (one Zenoh session) shared by every node in the process.

`init()` opens it (rclpy.init's place); `shutdown()` closes it. A Node created before `init()`
initialises the default context itself, so scripts and tests can skip the call.
"""

from __future__ import annotations

import atexit
import logging
import threading

from tether.bus.transport._base import Transport
from tether.settings import settings

__all__ = ["Context", "default_context", "init", "ok", "shutdown"]

log = logging.getLogger("tether.bus")


class Context:
    """Owns the transport. Thread-safe; `shutdown()` is idempotent."""

    def __init__(self, transport: Transport | None = None, *, allow_peer: bool = True) -> None:
        self._transport = transport
        self._allow_peer = allow_peer
        self._lock = threading.Lock()
        self._shut = False
        self.mode = "given" if transport is not None else None

    @property
    def transport(self) -> Transport:
        with self._lock:
            if self._shut:
                raise RuntimeError("the bus context is shut down; call tether.bus.init() again")
            if self._transport is None:
                self._transport = self._open()
            return self._transport

    def _open(self) -> Transport:
        s = settings()
        if s.transport == "rclpy":
            from tether.bus.transport.rclpy import RclpyTransport

            self.mode = "rclpy"
            return RclpyTransport()
        from tether.bus.security import client_auth
        from tether.bus.transport.zenoh import SharedMemory, ZenohTransport, open_session, shm_allowed

        session, mode = open_session(
            s.connect, extra_file=s.zenoh_config, allow_peer=self._allow_peer, auth=client_auth(s)
        )
        if mode == "peer":
            log.warning(
                "no router answers at %s: running on a standalone peer session (only this process "
                "is on the bus); start one with `tether up`",
                ", ".join(s.connect),
            )
        self.mode = mode
        shm = None
        if s.shm_threshold and shm_allowed(s.zenoh_config):
            shm = SharedMemory(s.shm_threshold, s.shm_pool_bytes)
        return ZenohTransport(session, mode, shm)

    def ok(self) -> bool:
        return not self._shut

    def shutdown(self) -> None:
        with self._lock:
            if self._shut:
                return
            self._shut = True
            if self._transport is not None:
                self._transport.close()


_default: Context | None = None
_default_lock = threading.Lock()


def init(*, transport: Transport | None = None, allow_peer: bool = True) -> Context:
    """Create the default context (idempotent while it is alive)."""
    global _default
    with _default_lock:
        if _default is None or not _default.ok():
            _default = Context(transport, allow_peer=allow_peer)
        return _default


def default_context() -> Context:
    return init()


def ok() -> bool:
    return _default is not None and _default.ok()


def shutdown() -> None:
    """Close the default context's transport (every node on it stops receiving)."""
    global _default
    with _default_lock:
        ctx, _default = _default, None
    if ctx is not None:
        ctx.shutdown()


# A process that exits with a Zenoh session open can hang at exit (research/bus.md): close it.
atexit.register(shutdown)
