"""Fixtures for ConfigBot's tests: worker node processes on a test bus, a probe node, a unique cgroup stack."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

_count = itertools.count()


class Workers:
    """Starts `configbot_demo.worker` processes (real nodes doing CPU work) and stops them by pid."""

    def __init__(self, bus) -> None:
        self.bus = bus
        self.procs: list[subprocess.Popen] = []

    def start(self, name: str, ns: str = "", **params: float | str) -> subprocess.Popen:
        cmd = [sys.executable, "-c", "from tether.edge.configbot.workload import worker_main; worker_main()"]
        cmd += ["--ros-args", "-r", f"__node:={name}"]
        if ns:
            cmd += ["-r", f"__ns:={ns}"]
        for k, v in params.items():
            cmd += ["-p", f"{k}:={v}"]
        p = subprocess.Popen(
            cmd,
            env=self.bus.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.procs.append(p)
        return p

    def stop(self, p: subprocess.Popen) -> None:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
            try:
                p.wait(timeout=8)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def close(self) -> None:
        for p in self.procs:
            self.stop(p)


@pytest.fixture
def workers(bus):
    w = Workers(bus)
    try:
        yield w
    finally:
        w.close()


@pytest.fixture
def probe(bus):
    """A node on the test bus, spinning in the background."""
    from tether.bus import Node, spin_in_background

    node = Node(f"probe_{os.getpid()}")
    spinner = spin_in_background(node)
    try:
        yield node
    finally:
        spinner.stop()
        node.destroy_node()


@pytest.fixture
def stack() -> str:
    """A cgroup stack name no other test (or xdist worker) uses."""
    return f"cbtest{os.getpid()}x{next(_count)}"


def write_spec(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


@pytest.fixture
def spec_file(tmp_path):
    return lambda text, name="spec.yaml": write_spec(tmp_path, text, name)
