"""tether bench bus: throughput and latency of the Node API against raw zenoh-python, same bytes, same run.

Two processes per measurement (publisher, subscriber, each in its own session as the launcher
starts nodes) through a router hosted here on a free loopback port. Throughput counts messages received (and, for the Node API, deserialised into
ROS 2 messages) per second from the first to the last; latency is send stamp to callback, with
the publisher paced well below saturation. Targets (the Foundation issue): >= 50,000 msgs/s at
1 KiB through the Node API; at most 25% throughput cost against raw Zenoh at 64 KiB and above.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

from tether.bench import BenchContext, BenchReport, row

SIZES = {"64B": 64, "1KiB": 1024, "64KiB": 64 * 1024, "1MiB": 1024 * 1024}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _one(api: str, endpoint: str, size: int, count: int, rate: float) -> dict:
    """Run one publisher/subscriber pair; returns the subscriber's JSON report."""
    worker = [sys.executable, "-m", "tether.bench.bus._worker"]
    timeout = 60.0 + count * size / 50e6
    sub = subprocess.Popen(
        [*worker, "sub", api, endpoint, str(timeout)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        line = sub.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"bench subscriber did not start (said {line!r})")
        pub = subprocess.run(
            [*worker, "pub", api, endpoint, str(size), str(count), str(rate)],
            timeout=timeout,
            check=True,
            start_new_session=True,
        )
        del pub
        out, _ = sub.communicate(timeout=timeout)
        return json.loads(out.strip().splitlines()[-1])
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.wait()


def run(ctx: BenchContext) -> BenchReport:
    from tether.bus.router import Router

    chosen = ctx.options.get("sizes", "1KiB,64KiB" if ctx.quick else ",".join(SIZES)).split(",")
    unknown = [k for k in chosen if k not in SIZES]
    if unknown:
        raise ValueError(f"--sizes takes some of {','.join(SIZES)}, but got {unknown}")
    sizes = {k: SIZES[k] for k in chosen}
    repeats, warmup = (1, 0) if ctx.quick else (5, 1)  # runs swing +-30% on 2 shared cores
    endpoint = f"tcp/127.0.0.1:{_free_port()}"
    rows = []
    curves: dict[str, dict[str, float]] = {"node": {}, "raw": {}}
    with Router([endpoint]):
        for label, size in sizes.items():
            # ~1.6 GB a run (capped at 100,000 messages): long enough (~0.5 s at 64 KiB) that start-up
            # and scheduler hiccups do not set the figure.
            count = max(200, min(100_000, int((1.6e9 if not ctx.quick else 2e7) / max(size, 4096))))
            if ctx.quick:
                count = min(count, 5_000)
            tput: dict[str, list[float]] = {"node": [], "raw": []}
            p50: dict[str, list[float]] = {"node": [], "raw": []}
            p99: dict[str, list[float]] = {"node": [], "raw": []}
            for i in range(warmup + repeats):
                for api in ("raw", "node"):
                    ctx.progress(f"{label} {api} run {i + 1}/{warmup + repeats}: {count} msgs")
                    r = _one(api, endpoint, size, count, 0.0)
                    lat = _one(api, endpoint, size, 200 if ctx.quick else 500, 500.0)
                    if i < warmup:
                        continue
                    tput[api].append(r["count"] / r["seconds"] if r["seconds"] > 0 else 0.0)
                    samples = np.asarray(lat["latency_ms"])
                    p50[api].append(float(np.percentile(samples, 50)) if samples.size else float("nan"))
                    p99[api].append(float(np.percentile(samples, 99)) if samples.size else float("nan"))
            params = {"payload_bytes": size, "messages": count, "transport": "zenoh, loopback, 2 processes"}
            target = 0.75 if size >= 64 * 1024 else None
            rows.append(
                row(
                    f"throughput.{label}",
                    tput["node"],
                    "msgs/s",
                    "higher",
                    params=params,
                    baseline="raw zenoh-python",
                    baseline_values=tput["raw"],
                    target=target,
                )
            )
            if size == 1024:
                rows.append(
                    row(
                        "throughput.node_api.1KiB",
                        tput["node"],
                        "msgs/s",
                        "higher",
                        params=params,
                        target=50_000,
                    )
                )
            for q, vals in (("p50", p50), ("p99", p99)):
                rows.append(
                    row(
                        f"latency.{q}.{label}",
                        vals["node"],
                        "ms",
                        "lower",
                        params={**params, "paced_hz": 500},
                        baseline="raw zenoh-python",
                        baseline_values=vals["raw"],
                    )
                )
            curves["node"][label] = float(np.median(tput["node"]))
            curves["raw"][label] = float(np.median(tput["raw"]))

    def plot(path: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        labels = list(curves["node"])
        x = np.arange(len(labels))
        ax.bar(x - 0.2, [curves["raw"][k] for k in labels], 0.4, label="raw zenoh-python")
        ax.bar(x + 0.2, [curves["node"][k] for k in labels], 0.4, label="tether Node API")
        ax.set_xticks(x, labels)
        ax.set_yscale("log")
        ax.set_ylabel("messages / s (received)")
        ax.set_title("tether bus throughput, 2 processes over loopback")
        ax.legend()
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)

    notes = [
        "Node API = CDR encoding (compiled codecs, one reused buffer) + attachment + delivery through "
        "the executor's callback lock + decoding; raw = zenoh-python put/subscribe of the same CDR "
        "bytes with no decoding. Publisher and subscriber each run in their own session, as the "
        "launcher starts nodes. Zenoh carries payloads above 3 KiB through shared memory for both; "
        "the Node API writes those of at least TETHER_SHM_THRESHOLD (128 KiB) once into its own "
        "shared-memory pool, where raw's put of bytes copies them twice."
    ]
    return BenchReport(rows=rows, plot=plot, notes=notes)
