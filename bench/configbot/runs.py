"""One benchmark run: the simulated robot stack on a scenario with ConfigBot in one mode, and what it measured.

Every policy runs the same ConfigBot node (launch/sim_robot.launch.yaml), so every policy is
measured the same way, second by second, against the same specification: `observe` changes
nothing (the default: no cgroups, Linux's fair share), `static` applies one configuration
(the even split, the hand-tuned one), `tune` is ConfigBot. Windows are placed on the
simulator's clock (`/clock`), so "from 60 s" and the scenario's changes are simulated seconds.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tether.edge.configbot.spec import Spec, load_spec
from tether.edge.configbot.timeline import Timeline, Window

__all__ = ["Policy", "RunResult", "recovery_s", "run_policy", "segment_fractions"]


@dataclass(frozen=True)
class Policy:
    name: str  # default, even, hand, configbot, configbot+library
    mode: str  # observe, static, tune
    spec: Path
    config: dict[str, Any] = field(default_factory=dict)
    library: bool = False  # read the context library (it is always written)


@dataclass
class RunResult:
    scenario: str
    policy: str
    timeline: Timeline
    sim: dict | None  # the simulator's report
    configbot: dict | None  # ConfigBot's report.json
    run_dir: Path
    wall_s: float

    def windows(self, from_s: float = 0.0) -> list[Window]:
        return [w for w in self.timeline.windows if w.clock is not None and w.clock >= from_s]

    def core_fraction(self, from_s: float, outside_tuning: bool = False) -> float | None:
        ws = [w for w in self.windows(from_s) if not outside_tuning or w.state not in ("tuning", "verifying")]
        return sum(w.core_ok for w in ws) / len(ws) if ws else None

    def objective(self, from_s: float, outside_tuning: bool = False) -> float | None:
        vals = [
            w.objective
            for w in self.windows(from_s)
            if w.objective is not None
            and math.isfinite(w.objective)
            and (not outside_tuning or w.state == "monitoring")
        ]
        return sum(vals) / len(vals) if vals else None

    def tunings(self) -> list[dict]:
        """Each tuning's convergence event (trials, seconds, objective, context)."""
        return [
            e for e in self.timeline.events if e["kind"] in ("converged", "infeasible") and e.get("trials")
        ]

    def outcome(self) -> dict[str, Any]:
        m = (self.sim or {}).get("metrics", {})
        keys = (
            "goals_reached",
            "collisions",
            "person_contacts",
            "tracking_mean_m",
            "path_length_m",
            "cmd_vel_rate_hz",
        )
        return {k: m.get(k) for k in keys}


def segment_fractions(ws: list[Window], n: int = 3) -> list[float]:
    """The core-OK fraction over n consecutive equal segments of the windows (the repeats of a row)."""
    if len(ws) < n:
        return [sum(w.core_ok for w in ws) / len(ws)] if ws else []
    size = len(ws) / n
    return [
        sum(w.core_ok for w in part) / len(part)
        for part in (ws[round(i * size) : round((i + 1) * size)] for i in range(n))
        if part
    ]


def recovery_s(ws: list[Window], change_s: float, hold: int = 5) -> float | None:
    """Simulated seconds from a change until the monitor holds every core constraint `hold` windows in a row.

    None when it never does before the run ends (the run's remaining time is then a lower bound)."""
    after = [w for w in ws if w.clock is not None and w.clock >= change_s]
    for i in range(len(after) - hold + 1):
        block = after[i : i + hold]
        if all(w.core_ok and w.state == "monitoring" for w in block):
            return max(0.0, (block[0].clock or change_s) - change_s)
    return None


def run_policy(
    scenario: str,
    policy: Policy,
    duration_s: float,
    out: Path,
    *,
    store_dir: Path,
    extra_args: dict[str, str] | None = None,
) -> RunResult:
    """Run the stack with ConfigBot in the policy's mode for `duration_s` simulated seconds."""
    from tether.edge.robot.stack import run_stack

    run_dir = out / f"{Path(scenario).stem}-{policy.name.replace('+', '-')}"  # a name or a scenario file
    run_dir.mkdir(parents=True, exist_ok=True)
    config_file = run_dir / "static_config.json"
    config_file.write_text(json.dumps(policy.config))
    args = {
        "configbot": "true",
        "configbot_spec": str(policy.spec),
        "configbot_mode": policy.mode,
        "configbot_static": str(config_file) if policy.mode == "static" else "",
        "configbot_library": "true" if policy.library else "false",
        "configbot_run_dir": str(run_dir),
        "configbot_store_dir": str(store_dir),
        **(extra_args or {}),
    }
    log = (run_dir / "launch.log").open("w")
    t0 = time.monotonic()
    try:
        run = run_stack(scenario, duration=duration_s, args=args, output=lambda line: log.write(line + "\n"))
    finally:
        log.close()
    wall = time.monotonic() - t0
    spec = load_spec(policy.spec)
    tl = (
        Timeline.load(spec, run_dir / "timeline.jsonl")
        if (run_dir / "timeline.jsonl").is_file()
        else Timeline(spec)
    )
    report = run_dir / "report.json"
    cb = json.loads(report.read_text()) if report.is_file() else None
    return RunResult(scenario, policy.name, tl, run.report, cb, run_dir, wall)


def load_spec_dict(spec: Spec) -> dict:
    return spec.model_dump(mode="json", exclude_none=True)
