"""Small helpers shared by tests (importable because pytest puts tests/ on the path)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred: Callable[[], object], timeout: float = 20.0, step: float = 0.05) -> bool:
    """Poll `pred` until it is true or `timeout` seconds pass; its last answer. Timeouts are liveness
    bounds, generous for a loaded machine: a passing test returns as soon as `pred` holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return bool(pred())
