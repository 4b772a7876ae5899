"""`tether lm serve` as a real process on a free loopback port, started and stopped by the test."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
from tests_helpers import free_port


def test_serve_runs_as_a_process_on_the_given_port() -> None:
    port = free_port()
    # The `tether lm` app itself (the `tether` command would also import every other system's CLI).
    app_main = "from tether.cloud.lm.cli import app; app()"
    cmd = [
        sys.executable,
        "-c",
        app_main,
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--threads",
        "1",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=dict(os.environ))
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, proc.stdout.read().decode()[-2000:]
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not answer /health within 90 s"
            time.sleep(0.25)
        reply = httpx.post(
            f"{url}/v1/chat/completions",
            timeout=60,
            json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3, "temperature": 0},
        )
        assert reply.status_code == 200 and reply.json()["usage"]["completion_tokens"] <= 3
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
