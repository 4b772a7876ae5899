"""`tether bench robot`: the simulated robot stack's own figures per scenario, with the default configuration.

Per scenario (nominal, crowded, contention, power_drop) the whole stack runs on this machine
(simulator + scan filter, localization, navigation, perception, mapping, each its own process)
and is measured from outside, as ConfigBot's profiler would: topic rates (1 / mean inter-arrival
time) and their spread (std of per-second rates), CPU per node, the task's outcome (goals,
collisions, tracking error) and the simulator's real-time factor (from `/clock`; the simulator is
paced to real time, so that figure tops out at 1.0: its headroom, simulated seconds per second of
the loop's own work, says whether it keeps up, together with the count of times it fell behind).

Targets (issue 4): RTF >= 1.0 in nominal with the whole stack on this machine's cores, and the
contention scenario's background job lowers the cmd_vel rate by at least 30% below nominal
under the default configuration, so ConfigBot has something to win back. `--quick` checks the
contract in under a minute (nominal and contention, short runs).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

import yaml

from tether.bench import BenchContext, BenchReport, row

__all__ = ["run"]

TOPICS = {
    "cmd_vel": "geometry_msgs/msg/Twist",
    "scan": "sensor_msgs/msg/LaserScan",
    "scan_filtered": "sensor_msgs/msg/LaserScan",
    "amcl_pose": "geometry_msgs/msg/PoseWithCovarianceStamped",
    "detections": "geometry_msgs/msg/PoseArray",
    "map_live": "nav_msgs/msg/OccupancyGrid",
    "camera/image_raw": "sensor_msgs/msg/Image",
}
NODES = ("sim", "scan_filter", "localization", "navigation", "perception", "mapping")


class _ClockTrace:
    """(wall, sim) pairs from `/clock`: maps simulated time to wall time, and gives the real-time factor."""

    def __init__(self, node) -> None:
        from tether.bus import QoSProfile
        from tether.bus.messages import get_type

        self.points: list[tuple[float, float]] = []
        self._lock = threading.Lock()
        node.create_subscription(
            get_type("rosgraph_msgs/msg/Clock"), "/clock", self._on, QoSProfile(depth=200)
        )

    def _on(self, msg) -> None:
        with self._lock:
            self.points.append((time.monotonic(), msg.clock.sec + msg.clock.nanosec * 1e-9))

    def reset(self) -> None:
        with self._lock:
            self.points = []

    def point_at(self, sim_t: float) -> tuple[float, float] | None:
        """(wall, sim) of the first tick at or after `sim_t` (the last tick, if the run ended within 0.1 s)."""
        with self._lock:
            for wall, st in self.points:
                if st >= sim_t:
                    return wall, st
            if self.points and sim_t - self.points[-1][1] < 0.1:
                return self.points[-1]
        return None

    def wall_at(self, sim_t: float) -> float | None:
        p = self.point_at(sim_t)
        return None if p is None else p[0]

    def rtf(self, s0: float, s1: float) -> float | None:
        """Simulated seconds per wall second between the ticks at s0 and s1."""
        a, b = self.point_at(s0), self.point_at(s1)
        return (b[1] - a[1]) / (b[0] - a[0]) if a is not None and b is not None and b[0] > a[0] else None


def _scenario_file(name: str, duration: float, shift: dict[str, float], tmp: Path) -> Path:
    """A copy of a bundled scenario with a new duration and event times (quick runs)."""
    from tether.edge.sim.scenario import scenario_path

    doc = yaml.safe_load(scenario_path(name).read_text())
    doc["duration_s"] = duration
    for e in doc.get("events", []):
        e["at_s"] = min(shift.get(e["action"], e["at_s"]), duration)
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _measure(
    ctx,
    monitor,
    clock,
    scenario: str,
    duration: float,
    windows: list[tuple[str, float, float]],
    log_dir: Path,
    args: dict[str, str],
) -> dict:
    """One run; per named window (sim-time bounds): rates, spreads, CPU per node, RTF; plus the sim's report."""
    from tether.edge.robot.stack import run_stack

    from .monitor import CpuSampler

    cpu = CpuSampler()
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.5):
            cpu.sample()

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    clock.reset()
    stem = f"{Path(scenario).stem}-{time.strftime('%H%M%S')}"
    log = (log_dir / f"{stem}.log").open("w")
    t0 = time.monotonic()
    try:
        run = run_stack(
            scenario,
            duration=duration,
            args=args,
            on_start=cpu.add,
            output=lambda line: log.write(line.rstrip("\n") + "\n"),
            router=False,
            report_path=log_dir / f"{stem}.json",
        )
    finally:
        stop.set()
        sampler.join()
        log.close()
    out: dict = {"report": run.report, "wall_s": time.monotonic() - t0, "windows": {}, "slips": None}
    if run.report is not None:
        out["slips"] = run.report.get("slips")
        out["rtf_capacity"] = run.report.get("rtf_capacity")
    # Windows count from the mission's start (the robot's first command), as the scenario's events do.
    offset = float((run.report or {}).get("mission_start_s") or 0.0)
    for name, w0, w1 in windows:
        s0, s1 = w0 + offset, w1 + offset
        a, b = clock.wall_at(s0), clock.wall_at(s1)
        if a is None or b is None:
            ctx.progress(f"{scenario}: window {name} [{s0}, {s1}] s not covered by /clock; skipped")
            continue
        out["windows"][name] = {
            "rates": {t: monitor.rate(t, a, b) for t in TOPICS},
            "spreads": {t: monitor.spread(t, a, b) for t in TOPICS},
            "cpu": {n: cpu.percent(n, a, b) for n in (*NODES, "background")},
            "rtf": clock.rtf(s0, s1),
        }
    return out


def _ensure_model(ctx: BenchContext) -> bool:
    from tether.edge.robot.perception import default_model_path

    if default_model_path().is_file():
        return True
    if ctx.quick:
        ctx.progress("no perception model: the quick run goes without the perception node")
        return False
    ctx.progress("no perception model: training it first (not part of the measurement)")
    from tether.edge.robot.train import train_perception

    train_perception(log=ctx.progress)
    return True


def run(ctx: BenchContext) -> BenchReport:
    from tether.bus import init, shutdown
    from tether.bus.router import Router

    from .monitor import TopicMonitor

    quick = ctx.quick
    tmp = Path(tempfile.mkdtemp(prefix="tether-bench-robot-"))
    log_dir = ctx.out_dir / "robot-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    args = {} if _ensure_model(ctx) else {"perception": "false"}
    # A cgroup stack of our own: another run on this machine may be using the default, `robot`.
    args["stack"] = f"benchrobot{os.getpid()}"
    # Nominal and contention runs alternate, so that whatever else this machine does drifts over both.
    if quick:
        plan = [
            ("nominal", _scenario_file("nominal", 10, {}, tmp), 10, [("all", 3, 10), ("late", 5, 10)]),
            (
                "contention",
                _scenario_file("contention", 10, {"start_contention": 3}, tmp),
                10,
                [("contended", 5, 10)],
            ),
        ]
    else:
        # "late": the same stretch of the mission as contention's contended window, for the comparison.
        nominal = ("nominal", "nominal", 40, [("all", 8, 40), ("late", 14, 40)])
        contention = (
            "contention",
            _scenario_file("contention", 40, {"start_contention": 10}, tmp),
            40,
            [("before", 3, 10), ("contended", 14, 40)],
        )
        plan = [nominal, contention] * 3 + [
            ("crowded", "crowded", 40, [("all", 8, 40)]),
            (
                "power_drop",
                _scenario_file("power_drop", 50, {"set_power_mode": 25}, tmp),
                50,
                [("MAXN", 5, 25), ("15W", 29, 50)],
            ),
        ]
    router = Router.from_settings()
    init()
    monitor = TopicMonitor(TOPICS)
    clock = _ClockTrace(monitor.node)
    results: dict[str, list[dict]] = {}
    failures: list[str] = []
    try:
        for i, (name, scenario, duration, windows) in enumerate(plan):
            ctx.progress(f"run {i + 1}/{len(plan)}: {name} ({duration} simulated s)")
            try:
                results.setdefault(name, []).append(
                    _measure(ctx, monitor, clock, str(scenario), duration, windows, log_dir, args)
                )
            except Exception as exc:  # one failed run is reported, the others still count
                ctx.progress(f"{name}: run failed: {type(exc).__name__}: {exc}")
                failures.append(f"{name}: {type(exc).__name__}: {exc}")
    finally:
        monitor.close()
        shutdown()
        router.close()
    report = _report(results, quick, args)
    report.notes += [f"run failed: {f}" for f in failures]
    return report


def _report(results: dict[str, list[dict]], quick: bool, args: dict) -> BenchReport:
    rows = []
    notes = []

    def window_values(name: str, window: str, pick) -> list[float]:
        vals = []
        for r in results.get(name, []):
            w = r["windows"].get(window)
            if w is not None:
                v = pick(w)
                if v is not None:
                    vals.append(float(v))
        return vals

    main_window = {"nominal": "all", "crowded": "all", "contention": "contended", "power_drop": "15W"}
    nominal_cmd = window_values("nominal", "late", lambda w: w["rates"]["cmd_vel"])
    rtf = window_values("nominal", "all", lambda w: w["rtf"])
    rows.append(
        row(
            "nominal: simulator real-time factor (whole stack)",
            rtf,
            "x",
            "higher",
            params={
                "scenario": "nominal",
                "cores": _cores(),
                "note": "paced to real time, so 1.0 is its ceiling; the headroom row carries the target",
            },
        )
    )
    headroom = [r["rtf_capacity"] for r in results.get("nominal", []) if r.get("rtf_capacity")]
    if headroom:
        rows.append(
            row(
                "nominal: simulator real-time factor headroom (whole stack)",
                headroom,
                "x",
                "higher",
                target=1.0,
                params={
                    "scenario": "nominal",
                    "cores": _cores(),
                    "definition": "simulated s per wall s of the simulator loop's own work (sleeps excluded), "
                    "over the mission, with every node running: the RTF it would reach unpaced",
                },
            )
        )
    slips = [r["slips"] for r in results.get("nominal", []) if r.get("slips") is not None]
    if slips:
        rows.append(
            row(
                "nominal: times the simulator fell > 0.25 s behind real time",
                slips,
                "count",
                "lower",
                target=0,
                params={
                    "scenario": "nominal",
                    "note": "the simulator is paced to real time: RTF 1.0 is its ceiling",
                },
            )
        )
    cont_cmd = window_values("contention", "contended", lambda w: w["rates"]["cmd_vel"])
    if nominal_cmd and cont_cmd:
        base = statistics.median(nominal_cmd)
        # Runs alternate nominal, contention: each contention run against the nominal run just before it.
        pairs = list(zip(nominal_cmd, cont_cmd))
        degr = (
            [1.0 - c / n for n, c in pairs]
            if len(pairs) == len(cont_cmd)
            else [1.0 - c / base for c in cont_cmd]
        )
        before = window_values("contention", "before", lambda w: w["rates"]["cmd_vel"])
        rows.append(
            row(
                "contention: cmd_vel rate drop below nominal",
                degr,
                "fraction",
                "higher",
                target=0.30,
                params={
                    "nominal_hz": base,
                    "contention_hz": statistics.median(cont_cmd),
                    "same_run_before_hz": statistics.median(before) if before else None,
                },
            )
        )
    for name, runs in results.items():
        windows = (
            [main_window[name]]
            + (["MAXN"] if name == "power_drop" else [])
            + (["before"] if name == "contention" else [])
        )
        for wname in windows:
            label = name if wname == main_window[name] else f"{name} ({wname})"
            for topic in TOPICS:
                vals = window_values(name, wname, lambda w, t=topic: w["rates"][t])
                spread = window_values(name, wname, lambda w, t=topic: w["spreads"][t])
                if vals:
                    rows.append(
                        row(
                            f"{label}: rate {topic}",
                            vals,
                            "Hz",
                            "higher",
                            params={
                                "scenario": name,
                                "window": wname,
                                "spread_hz": statistics.median(spread),
                            },
                        )
                    )
            for node in (*NODES, "background"):
                vals = window_values(name, wname, lambda w, n=node: w["cpu"].get(n))
                if vals and (node != "background" or statistics.median(vals) > 1.0):
                    rows.append(
                        row(
                            f"{label}: CPU {node}",
                            vals,
                            "% core",
                            "lower",
                            params={"scenario": name, "window": wname},
                        )
                    )
            r = window_values(name, wname, lambda w: w["rtf"])
            if r and name != "nominal":
                rows.append(row(f"{label}: real-time factor", r, "x", "higher", params={"scenario": name}))
        reports = [x["report"] for x in runs if x["report"]]
        if reports:
            m = [x["metrics"] for x in reports]
            rows.append(
                row(
                    f"{name}: goals reached per minute",
                    [60 * x["goals_reached"] / x["sim_time_s"] for x in m],
                    "1/min",
                    "higher",
                    params={"scenario": name},
                )
            )
            rows.append(
                row(
                    f"{name}: collisions",
                    [x["collisions"] for x in m],
                    "count",
                    "lower",
                    params={"scenario": name},
                )
            )
            rows.append(
                row(
                    f"{name}: tracking error mean",
                    [x["tracking_mean_m"] for x in m],
                    "m",
                    "lower",
                    params={"scenario": name},
                )
            )
    if args.get("perception") == "false":
        notes.append("perception node not run (no trained model; `tether robot train-perception`)")
    notes.append(
        "rates: 1 / mean inter-arrival time over the window, measured by a bus subscriber outside the stack; "
        "spread_hz: std of per-second counts. CPU: psutil, % of one core."
    )
    notes.append("the simulator runs at nice -5 when allowed (it is the world, not the robot)")
    load = os.getloadavg()
    notes.append(
        f"machine load average at the end (1, 5, 15 min): {load[0]:.1f}, {load[1]:.1f}, {load[2]:.1f} on {_cores()} cores"
    )
    if quick:
        notes.append("quick run: one short run per scenario; figures check the contract, not the targets")

    def plot(path: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        names = [n for n in results]
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        cmd = [
            statistics.median(window_values(n, main_window[n], lambda w: w["rates"]["cmd_vel"]) or [0])
            for n in names
        ]
        axes[0].bar(names, cmd, color="tab:blue")
        axes[0].set_ylabel("cmd_vel rate (Hz)")
        axes[0].set_title("navigation's core topic per scenario")
        bottom = [0.0] * len(names)
        for node in NODES:
            vals = [
                statistics.median(window_values(n, main_window[n], lambda w, nd=node: w["cpu"][nd]) or [0])
                for n in names
            ]
            axes[1].bar(names, vals, bottom=bottom, label=node)
            bottom = [b + v for b, v in zip(bottom, vals)]
        axes[1].set_ylabel("CPU (% of one core)")
        axes[1].set_title("CPU per node")
        axes[1].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)

    return BenchReport(rows=rows, plot=plot, notes=notes)


def _cores() -> int:
    return os.cpu_count() or 1
