"""Beyond the robot: ConfigBot tunes the shared LM server's `max_batch_size` against a TTFT p99 constraint.

The LM runtime (tether.cloud.lm.service, node /cloud/lm) serves the OpenAI API and takes
`max_batch_size` over the bus; an open-loop Poisson client (`LoadClient`, node /cloud/lm_client)
streams completions and reports what its users see as telemetry: `client.ttft.p99_ms` over the
last few seconds, `client.tokens_per_s`. ConfigBot's specification (SPEC): TTFT p99 at most
`ttft_ms`, maximise the server's `lm.tokens_per_s`, one knob. The same ConfigBot, the same bus,
no robot. `tether bench configbot --lm` runs it; the default (max_batch_size 8, observed) first.
"""

from __future__ import annotations

import collections
import http.client
import json
import random
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from tether.bench import BenchContext, row
from tether.bench.configbot.runs import segment_fractions
from tether.bus import Node

__all__ = ["LoadClient", "run_lm"]

SPEC = """
name: lm_batch
nodes:
  /cloud/lm: {{cgroup: false, local: false}}  # a service anywhere on the bus: parameters and metrics only
constraints:
  - {{metric: "/cloud/lm_client:client.ttft.p99_ms", max: {ttft_ms}, name: "TTFT p99 <= {ttft_ms} ms"}}
objective: {{maximize: "/cloud/lm:lm.tokens_per_s"}}
knobs:
  - {{node: /cloud/lm, kind: parameter, name: max_batch_size, type: int, min: 1, max: 32, prefer: high}}
trial: {{settle_s: 6, measure_s: 6, max_trials: 8, startup_trials: 3, patience: 3}}
monitor: {{startup_s: 6, window_s: 10}}
context: {{load_bins: null, power_mode: false}}
"""
PROMPT = "Write a short note to a robot about keeping its battery charged and its sensors clean."


class LoadClient(Node):
    """Streams completions from an OpenAI-compatible server at Poisson arrivals; client-side TTFT as telemetry.
    (Its attributes carry a prefix: a Node's own private names must not be shadowed.)"""

    def __init__(
        self,
        host: str,
        port: int,
        rate_hz: float,
        max_tokens: int,
        *,
        window_s: float = 6.0,
        seed: int = 0,
        **kwargs,
    ) -> None:
        kwargs.setdefault("namespace", "/cloud")
        super().__init__("lm_client", **kwargs)
        self.host, self.port, self.rate, self.max_tokens = host, port, rate_hz, max_tokens
        self.window_s = window_s
        self._lc_rng = random.Random(seed)
        self._lc_lock = threading.Lock()
        self._lc_first: collections.deque[tuple[float, float]] = collections.deque()  # (time, ttft s)
        self._lc_tokens: collections.deque[tuple[float, int]] = collections.deque()
        self.errors = 0
        self.inflight = 0
        self._lc_stop = threading.Event()
        self._lc_pool = ThreadPoolExecutor(max_workers=64, thread_name_prefix="lm-client")
        self._lc_model = self._get_model()
        self._lc_thread = threading.Thread(target=self._arrivals, name="lm-arrivals", daemon=True)
        self._lc_thread.start()
        self.telemetry.add_source(self._metrics)

    def _get_model(self) -> str:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        conn.request("GET", "/v1/models")
        return json.loads(conn.getresponse().read())["data"][0]["id"]

    def _arrivals(self) -> None:
        while not self._lc_stop.wait(self._lc_rng.expovariate(self.rate)):
            self._lc_pool.submit(self._request)

    def _request(self) -> None:
        t0 = time.monotonic()
        body = {
            "model": self._lc_model,
            "prompt": PROMPT,
            "max_tokens": self.max_tokens,
            "ignore_eos": True,  # every request the same length: the load is what the rate says
            "stream": True,
            "temperature": 0,
        }
        with self._lc_lock:
            self.inflight += 1
        try:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
            conn.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
            resp = conn.getresponse()
            if resp.status != 200:
                raise OSError(f"HTTP {resp.status}")
            first = True
            while True:
                line = resp.readline()
                if not line or line.strip() == b"data: [DONE]":
                    break
                if line.startswith(b"data: "):
                    now = time.monotonic()
                    with self._lc_lock:
                        if first:
                            self._lc_first.append((now, now - t0))
                            first = False
                        self._lc_tokens.append((now, 1))
            conn.close()
        except (OSError, http.client.HTTPException):
            with self._lc_lock:
                self.errors += 1
        finally:
            with self._lc_lock:
                self.inflight -= 1

    def _metrics(self) -> dict[str, float]:
        now = time.monotonic()
        with self._lc_lock:
            while self._lc_first and self._lc_first[0][0] < now - self.window_s:
                self._lc_first.popleft()
            while self._lc_tokens and self._lc_tokens[0][0] < now - self.window_s:
                self._lc_tokens.popleft()
            ttft = np.array([s for _, s in self._lc_first]) * 1e3
            tokens = sum(n for _, n in self._lc_tokens)
            out = {
                "client.tokens_per_s": tokens / self.window_s,
                "client.inflight": float(self.inflight),
                "client.errors": float(self.errors),
            }
        if ttft.size:
            out["client.ttft.p99_ms"] = float(np.percentile(ttft, 99))
            out["client.ttft.p50_ms"] = float(np.percentile(ttft, 50))
        return out

    def close(self) -> None:
        self._lc_stop.set()
        self._lc_thread.join(timeout=5)
        self._lc_pool.shutdown(wait=False, cancel_futures=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(port: int, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return True
        except OSError:
            pass
        time.sleep(0.5)
    return False


def _seen(ws, key: str) -> list[float]:
    """The windows' values of `key` where there was one (NaN when none: the queue let no first token out)."""
    vals = [w.values[key] for w in ws if w.values.get(key) is not None]
    return vals or [float("nan")]


def run_lm(ctx: BenchContext) -> tuple[list, dict, list[str]]:
    from tether.bus import init, shutdown, spin_in_background
    from tether.bus.context import shutdown as close_context
    from tether.bus.router import Router
    from tether.edge.configbot import BotOptions, ConfigBot, Mode, load_spec
    from tether.settings import override, process_environ, settings

    rate = float(ctx.options.get("lm_rate", 1.0))
    ttft_ms = float(ctx.options.get("lm_ttft_ms", 3000))
    out = ctx.out_dir / "configbot_lm"
    out.mkdir(parents=True, exist_ok=True)
    spec_path = out / "lm_spec.yaml"
    spec_path.write_text(SPEC.format(ttft_ms=ttft_ms))
    spec = load_spec(spec_path)
    endpoint, port = f"tcp/127.0.0.1:{_free_port()}", _free_port()
    old = settings()
    close_context()
    override(connect=(endpoint,), listen=(endpoint,))
    router = Router([endpoint])
    env = {**process_environ(), "TETHER_CONNECT": endpoint}
    server = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from tether.cloud.lm.service import main; main()",
            "--ros-args",
            "-p",
            f"port:={port}",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(out / "server.log").open("w"),
        start_new_session=True,
    )
    notes = [
        f"LM server /cloud/lm (tether.cloud.lm), Poisson load {rate:g} req/s of {PROMPT!r}, 48 tokens each"
    ]
    bots = {}
    try:
        if not _wait_http(port, 180):
            raise RuntimeError(f"the LM server did not come up on port {port} (see {out / 'server.log'})")
        init()
        node = Node("configbot_lm")
        client = LoadClient("127.0.0.1", port, rate, 48)
        spins = [spin_in_background(node), spin_in_background(client)]
        try:
            for name, mode, seconds in (("default", Mode.OBSERVE, 40.0), ("configbot", Mode.TUNE, 150.0)):
                ctx.progress(f"LM server: {name}")
                bot = ConfigBot(
                    spec,
                    node,
                    BotOptions(
                        mode=mode,
                        run_dir=out / name,
                        store_dir=out / "store",
                        library=False,
                        cgroups=False,
                        sampler="gp",
                    ),
                )
                bots[name] = bot
                runner = threading.Thread(target=lambda b=bot, s=seconds: b.run(duration=s))
                runner.start()
                end = time.monotonic() + seconds
                while runner.is_alive() and time.monotonic() < end:
                    conv = [e for e in bot.timeline.events if e["kind"] in ("converged", "infeasible")]
                    if conv and bot.now() > conv[0]["t"] + 30:
                        bot.stop()
                    runner.join(1.0)
                runner.join(timeout=30)
        finally:
            for s in spins:
                s.stop()
            client.close()
            client.destroy_node()
            node.destroy_node()
            shutdown()
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        router.close()
        override(connect=old.connect, listen=old.listen)
    d = [w for w in bots["default"].timeline.windows if w.t > 10]
    cb = bots["configbot"]
    conv = [e for e in cb.timeline.events if e["kind"] == "converged"]
    mon = [w for w in cb.timeline.windows if conv and w.t > conv[0]["t"] + 6]
    key = spec.constraints[0].signal(spec.namespace).key
    rows = [
        row(
            "lm: TTFT p99 held, default max_batch_size 8", segment_fractions(d) or [0.0], "fraction", "higher"
        ),
        row(
            "lm: TTFT p99 held, configbot after convergence",
            segment_fractions(mon) or [0.0],
            "fraction",
            "higher",
            target=0.95,
        ),
        row(
            "lm: tokens/s, configbot vs default",
            [w.objective or 0.0 for w in mon] or [0.0],
            "tokens/s",
            "higher",
            baseline="max_batch_size 8",
            baseline_values=[w.objective or 0.0 for w in d] or [0.0],
        ),
        row(
            "lm: TTFT p99, configbot (windows with a first token)",
            _seen(mon, key),
            "ms",
            "lower",
            params={"windows without any first token": sum(w.values.get(key) is None for w in mon)},
        ),
        row(
            "lm: TTFT p99, default (windows with a first token)",
            _seen(d, key),
            "ms",
            "lower",
            params={"windows without any first token": sum(w.values.get(key) is None for w in d)},
        ),
    ]
    doc = {
        "best": cb.best,
        "infeasible": cb.infeasible,
        "trials": cb.history,
        "spec": SPEC.format(ttft_ms=ttft_ms),
    }
    notes.append(f"configbot chose {cb.best['config'] if cb.best else None}; infeasible: {cb.infeasible}")
    return rows, doc, notes
