"""tether bench bus: throughput and latency of the Node API against raw zenoh-python, same bytes, same run.

Two processes per measurement (publisher, subscriber, each in its own session as the launcher
starts nodes) through a router hosted here on a free loopback port. Throughput counts messages
received (and, for the Node API, deserialised into ROS 2 messages) per second from the first to
the last; latency is send stamp to callback, with the publisher paced well below saturation.

Where the time goes: each throughput run also reports the CPU microseconds per message of the
publisher, the subscriber and the router (every thread of each process, Zenoh's included). Where
the three processes saturate the cores (2 here), throughput is about cores / their sum.

Targets (the Foundation issue): >= 50,000 msgs/s at 1 KiB through the Node API; at most 25%
throughput cost against raw Zenoh at 64 KiB and above.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from tether.bench import BenchContext, BenchReport, row

SIZES = {"64B": 64, "1KiB": 1024, "64KiB": 64 * 1024, "1MiB": 1024 * 1024}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _one(api: str, endpoint: str, size: int, count: int, rate: float) -> dict:
    """Run one publisher/subscriber pair; returns the subscriber's JSON report, with the publisher's
    CPU seconds (`pub_cpu_s`, over `pub_count` messages) and this process's (`router_cpu_s`: it hosts
    the router, and does little else while the pair runs)."""
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
        cpu = time.process_time()
        pub = subprocess.run(
            [*worker, "pub", api, endpoint, str(size), str(count), str(rate)],
            timeout=timeout,
            check=True,
            start_new_session=True,
            stdout=subprocess.PIPE,
            text=True,
        )
        out, _ = sub.communicate(timeout=timeout)
        report = json.loads(out.strip().splitlines()[-1])
        report["router_cpu_s"] = time.process_time() - cpu
        sent = json.loads(pub.stdout.strip().splitlines()[-1])
        report["pub_cpu_s"], report["pub_count"] = sent["cpu_s"], sent["count"]
        return report
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.wait()


def _cpu_us(r: dict, hosted: bool) -> dict[str, float]:
    """CPU microseconds per message of each process of one throughput run (the router's only when
    this process hosts it)."""
    got = max(r["count"], 1)
    parts = {
        "publisher": 1e6 * r["pub_cpu_s"] / max(r["pub_count"], 1),
        "subscriber": 1e6 * r["cpu_s"] / got,
    }
    if hosted:
        parts["router"] = 1e6 * r["router_cpu_s"] / got
    return parts


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
    with Router([endpoint]) as router:
        for label, size in sizes.items():
            # ~1.6 GB a run (capped at 100,000 messages): long enough (~0.5 s at 64 KiB) that start-up
            # and scheduler hiccups do not set the figure.
            count = max(200, min(100_000, int((1.6e9 if not ctx.quick else 2e7) / max(size, 4096))))
            if ctx.quick:
                count = min(count, 5_000)
            tput: dict[str, list[float]] = {"node": [], "raw": []}
            p50: dict[str, list[float]] = {"node": [], "raw": []}
            p99: dict[str, list[float]] = {"node": [], "raw": []}
            cpu: dict[str, list[dict[str, float]]] = {"node": [], "raw": []}
            for i in range(warmup + repeats):
                for api in ("raw", "node"):
                    ctx.progress(f"{label} {api} run {i + 1}/{warmup + repeats}: {count} msgs")
                    r = _one(api, endpoint, size, count, 0.0)
                    lat = _one(api, endpoint, size, 200 if ctx.quick else 500, 500.0)
                    if i < warmup:
                        continue
                    tput[api].append(r["count"] / r["seconds"] if r["seconds"] > 0 else 0.0)
                    cpu[api].append(_cpu_us(r, router.hosted))
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
            split = {
                f"{api}_{part}_us": round(float(np.median([c[part] for c in cpu[api]])), 2)
                for api in ("node", "raw")
                for part in cpu[api][0]
            }
            rows.append(
                row(
                    f"cpu_per_message.{label}",
                    [sum(c.values()) for c in cpu["node"]],
                    "us",
                    "lower",
                    params={**params, **split},
                    baseline="raw zenoh-python",
                    baseline_values=[sum(c.values()) for c in cpu["raw"]],
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
        "shared-memory pool, where raw's put of bytes copies them twice.",
        "cpu_per_message: CPU time of every thread of the publisher (over its sending loop), the "
        "subscriber (first to last message) and the router (this process, while the pair runs), per "
        "message, summed; the parts (medians) are in params.",
    ]
    return BenchReport(rows=rows, plot=plot, notes=notes)
