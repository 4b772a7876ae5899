"""The quick benchmark (< 60 s): ConfigBot against the default on two worker nodes under an emulated low-power mode.

A core node (35 Hz, 4 ms of CPU each) and a hog (as fast as it can, 20 ms each) share a stack
limited to 0.2 cores (cgroup quota, as the hardware-profile emulation does): by fair share the
core node falls below its 28 Hz minimum. It checks the contract, not the robot's targets.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

from tether.bench import BenchContext, row
from tether.bench.configbot.runs import segment_fractions

__all__ = ["run_quick"]

SPEC = """
name: quick
stack: {stack}
nodes:
  /core/core: {{essential: true}}
  /hog/hog: {{}}
constraints: [{{rate: /core/out, min: 28}}]
objective: {{max_min_rate: {{/hog/out: 1.0}}}}
knobs:
  - {{node: /hog/hog, kind: cpu_quota, min: 0.02, max: 0.2, log: true}}
  - {{node: /hog/hog, kind: parameter, name: work_ms, min: 2, max: 20}}
trial: {{settle_s: 0.5, measure_s: 1.0, max_trials: 4, startup_trials: 2, patience: 2}}
monitor: {{startup_s: 1.0}}
context: {{load_bins: null}}
"""


def _worker(name: str, env: dict, **params: float) -> subprocess.Popen:
    cmd = [sys.executable, "-c", "from tether.edge.configbot.workload import worker_main; worker_main()"]
    cmd += ["--ros-args", "-r", f"__node:={name}", "-r", f"__ns:=/{name}"]
    for k, v in params.items():
        cmd += ["-p", f"{k}:={v}"]
    return subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


def _run(bot, seconds: float, until=None) -> dict:
    report: dict = {}
    t = threading.Thread(target=lambda: report.update(bot.run(duration=seconds)))
    t.start()
    end = time.monotonic() + seconds
    while t.is_alive() and time.monotonic() < end:
        if until is not None and until():
            bot.stop()
            break
        time.sleep(0.2)
    t.join(timeout=30)
    return report


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_quick(ctx: BenchContext) -> tuple[list, dict, list[str]]:
    from tether.bus import Node, init, shutdown, spin_in_background
    from tether.bus.context import shutdown as close_context
    from tether.bus.router import Router
    from tether.edge.cgroups import CgroupError, CgroupManager
    from tether.edge.configbot import BotOptions, ConfigBot, Mode, load_spec
    from tether.settings import override, process_environ, settings

    out = ctx.out_dir / "configbot_quick"
    out.mkdir(parents=True, exist_ok=True)
    stack = f"cbquick{os.getpid()}"
    spec_path = out / "quick_spec.yaml"
    spec_path.write_text(SPEC.format(stack=stack))
    spec = load_spec(spec_path)
    endpoint = f"tcp/127.0.0.1:{_free_port()}"  # a bus of its own, whatever else runs on this machine
    old = settings()
    close_context()
    override(connect=(endpoint,), listen=(endpoint,))
    router = Router([endpoint])
    env = {**process_environ(), "TETHER_CONNECT": endpoint}
    procs = [_worker("core", env, rate=35.0, work_ms=4.0), _worker("hog", env, rate=200.0, work_ms=20.0)]
    notes, manager = [], None
    try:
        try:
            manager = CgroupManager(stack)
            manager.set_quota(None, 0.2)
            for name, p in zip(("core", "hog"), procs):  # the stack under its power mode, whatever the policy
                manager.place(name, p.pid)
        except CgroupError as exc:
            notes.append(f"no stack quota (no contention emulated): {exc}")
        init()
        node = Node("configbot_quick")
        spinner = spin_in_background(node)
        try:
            ctx.progress("default (observe)")
            default = ConfigBot(
                spec, node, BotOptions(mode=Mode.OBSERVE, run_dir=out / "default", store_dir=out, plot=False)
            )
            _run(default, 7.0)
            ctx.progress("configbot (tune)")
            bot = ConfigBot(
                spec,
                node,
                BotOptions(run_dir=out / "configbot", store_dir=out / "store", library=False, plot=False),
            )

            def settled() -> bool:
                conv = [e for e in bot.timeline.events if e["kind"] in ("converged", "infeasible")]
                return bool(conv) and bot.now() > conv[0]["t"] + 3.0

            _run(bot, 35.0, until=settled)
        finally:
            spinner.stop()
            node.destroy_node()
            shutdown()
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=10)
        if manager is not None:
            manager.close()
        router.close()
        override(connect=old.connect, listen=old.listen)
    d_ws = [w for w in default.timeline.windows if w.t > 3]
    conv = [e for e in bot.timeline.events if e["kind"] == "converged"]
    mon = [w for w in bot.timeline.windows if conv and w.t > conv[0]["t"]]
    rows = [
        row("quick: core held, default (observe)", segment_fractions(d_ws) or [0.0], "fraction", "higher"),
        row(
            "quick: core held, configbot after convergence",
            segment_fractions(mon) or [0.0],
            "fraction",
            "higher",
            target=0.95,
        ),
        row(
            "quick: trials to converge",
            [float(conv[0]["trials"]) if conv else 99.0],
            "trials",
            "lower",
            target=10,
        ),
    ]
    doc = {"default": default.timeline.summary(), "configbot": bot.timeline.summary(), "best": bot.best}
    return rows, doc, notes
