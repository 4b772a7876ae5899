"""Shared fixtures. Each test's bus is a router on a free loopback port of its own, so tests run in
parallel and never meet a router a user already runs."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from tests_helpers import free_port

from tether import settings as settings_mod


@dataclass
class Bus:
    endpoint: str
    env: dict[str, str]  # environment for subprocesses joining this bus


@pytest.fixture
def bus(tmp_path, monkeypatch) -> Iterator[Bus]:
    """A Zenoh router on a free loopback port; settings and TETHER_CONNECT point at it."""
    from tether.bus import context
    from tether.bus.router import Router

    endpoint = f"tcp/127.0.0.1:{free_port()}"
    monkeypatch.setenv("TETHER_CONNECT", endpoint)
    monkeypatch.setenv("TETHER_LISTEN", endpoint)
    monkeypatch.setenv("TETHER_ARTEFACTS", str(tmp_path / "artefacts"))
    old = settings_mod._current
    settings_mod._current = None
    context.shutdown()
    router = Router([endpoint])
    env = dict(os.environ)
    try:
        yield Bus(endpoint, env)
    finally:
        context.shutdown()
        router.close()
        settings_mod._current = old
