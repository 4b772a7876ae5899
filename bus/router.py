"""Hosting or joining the bus's Zenoh router: what `tether up` and `tether launch` do first.

If a router already answers at the configured endpoint (a user's `zenohd`, an `rmw_zenohd`, another
`tether up`), we join it; otherwise this process hosts a router-mode session listening there
(loopback by default: nothing listens beyond the machine unless TETHER_LISTEN says so).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterable
from pathlib import Path

import zenoh

from tether.bus.transport.zenoh import zenoh_config

__all__ = ["Router", "endpoint_answers"]

log = logging.getLogger("tether.bus")


def endpoint_answers(endpoint: str, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections at a 'tcp/host:port' endpoint."""
    proto, _, addr = endpoint.partition("/")
    if proto not in ("tcp", "tls"):
        return False
    host, _, port = addr.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


class Router:
    """Hosts a router on `listen` unless one answers at `connect`; `close()` stops a hosted one."""

    def __init__(
        self,
        listen: Iterable[str],
        connect: Iterable[str] = (),
        *,
        extra_file: Path | None = None,
        extra: dict | None = None,
    ) -> None:
        self.listen = list(listen)
        self.connect = list(connect) or self.listen
        self.session: zenoh.Session | None = None
        self.joined = any(endpoint_answers(ep) for ep in self.connect)
        if self.joined:
            log.info("joining the router already at %s", ", ".join(self.connect))
            return
        conf = zenoh_config("router", listen=self.listen, extra_file=extra_file, extra=extra)
        try:
            self.session = zenoh.open(conf)
        except zenoh.ZError as exc:
            raise RuntimeError(
                f"cannot host a Zenoh router on {', '.join(self.listen)}: {exc}; free the port or set TETHER_LISTEN"
            ) from None
        log.info("hosting the bus router on %s", ", ".join(self.listen))

    @classmethod
    def from_settings(cls) -> Router:
        """Host (or join) the router the settings describe, with their access control."""
        from tether.bus.security import router_access_control
        from tether.settings import settings

        s = settings()
        return cls(s.listen, s.connect, extra_file=s.zenoh_config, extra=router_access_control(s))

    @property
    def hosted(self) -> bool:
        return self.session is not None

    def close(self) -> None:
        if self.session is not None and not self.session.is_closed():
            self.session.close()
        self.session = None

    def __enter__(self) -> Router:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
