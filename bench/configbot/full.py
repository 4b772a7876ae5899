"""The full benchmark: each testbed scenario under four policies in one run, and recovery with/without the library.

Policies (one ConfigBot node in each, so all are measured alike, see runs.py):
    default     observe: no quotas, no cgroups, Linux's fair share
    even        static: every node of the stack a CPU quota of (cores / nodes)
    hand        static: a configuration chosen by hand from the nodes' roles (HAND below), not from any tuning
    configbot   tune, every context from scratch (the library is written, never read)
    +library    tune again on contention and power_drop, reading the library the scratch run wrote

Figures, counted on the simulator's clock from 60 s to the end of the run: the fraction of
1-second windows in which every core constraint holds, with the time in tunings included and
without it (the monitor's windows: after convergence); the objective; trials and seconds each
tuning took to converge; seconds to recover after a scenario change (until the monitor holds
every core constraint five windows in a row), with and without the library; robot outcomes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from tether.bench import BenchContext, row
from tether.bench.configbot.reference import load_reference
from tether.bench.configbot.runs import Policy, RunResult, recovery_s, run_policy, segment_fractions

__all__ = ["CHANGES", "HAND", "even_split_spec", "run_full"]

FROM_S = 60.0
# The scenario changes (simulated seconds) whose recovery is measured.
CHANGES = {
    "contention": [(10.0, "contention starts"), (115.0, "contention stops")],
    "power_drop": [(30.0, "MAXN -> 15W")],
}
# By hand, from the nodes' roles: navigation and localization weigh more while the CPU is contended;
# perception gets a third of a core at a modest resolution and rate; mapping a tenth of a core.
HAND = {
    "navigation:cpu_weight": 4.0,
    "localization:cpu_weight": 2.0,
    "perception:cpu_quota": 0.3,
    "perception:parameter:input_resolution": 128,
    "perception:rate_cap:camera/image_raw": 5.0,
    "mapping:cpu_quota": 0.1,
}


def even_split_spec(spec: Path, folder: Path) -> tuple[Path, dict[str, float]]:
    """The spec with one CPU-quota knob per node, and the even split: each node cores / nodes."""
    doc = yaml.safe_load(spec.read_text())
    cores = float(os.cpu_count() or 1)
    nodes = list(doc.get("nodes", {}))
    doc["name"] = f"{doc['name']}_even"
    doc["knobs"] = [{"node": n, "kind": "cpu_quota", "min": 0.05, "max": cores} for n in nodes]
    path = folder / "even_spec.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path, {f"{n}:cpu_quota": round(cores / len(nodes), 3) for n in nodes}


def run_full(
    ctx: BenchContext, spec: Path
) -> tuple[list, dict[str, Any], list[str], dict[str, dict[str, RunResult]]]:
    out = ctx.out_dir / "configbot_runs"
    out.mkdir(parents=True, exist_ok=True)
    even_spec, even = even_split_spec(spec, out)
    base_s = float(ctx.options.get("base_s", 100))
    # ConfigBot's runs: the scenario's change, a tuning of up to 10 trials (~45 s on a quiet machine,
    # ~160 s under heavy load) and at least a minute of monitoring after it.
    tune_s = float(ctx.options.get("tune_s", 240))
    scenarios = [
        s for s in ctx.options.get("scenarios", "nominal,crowded,contention,power_drop").split(",") if s
    ]
    reference = load_reference()
    results: dict[str, dict[str, RunResult]] = {}
    for scen in scenarios:
        changes = scen in CHANGES
        policies = [
            Policy("default", "observe", spec),
            Policy("even", "static", even_spec, even),
            Policy("hand", "static", spec, HAND),
            Policy("configbot", "tune", spec, library=False),
        ]
        if changes:
            policies.append(Policy("configbot+library", "tune", spec, library=True))
        store = out / f"store-{scen}"  # the scratch run writes the library the +library run reads
        for pol in policies:
            duration = (
                tune_s if pol.mode == "tune" and changes else base_s if pol.mode != "tune" else base_s + 20
            )
            ctx.progress(f"{scen}: {pol.name} ({duration:.0f} s)")
            res = run_policy(scen, pol, duration, out, store_dir=store)
            results.setdefault(scen, {})[pol.name] = res
            frac = res.core_fraction(FROM_S)
            ctx.progress(
                f"  core held {frac if frac is None else round(frac, 3)}, objective {res.objective(FROM_S)}, "
                f"tunings {[(e['trials'], e['seconds']) for e in res.tunings()]}, outcome {res.outcome()}"
            )
    rows, doc, notes = _rows(results, reference)
    return rows, doc, notes, results


def _rows(results: dict[str, dict[str, RunResult]], reference: dict | None) -> tuple[list, dict, list[str]]:
    rows, notes = [], []
    doc: dict[str, Any] = {"scenarios": {}}
    ref = (reference or {}).get("scenarios", {})
    all_trials: list[float] = []
    all_seconds: list[float] = []
    rec_lib: list[float] = []
    rec_scratch: list[float] = []
    for scen, runs in results.items():
        feasible = ref.get(scen, {}).get("feasible")
        sdoc: dict[str, Any] = {"reference_feasible": feasible}
        for name, r in runs.items():
            ws = r.windows(FROM_S)
            mon = [w for w in ws if w.state == "monitoring"]
            sdoc[name] = {
                "core_ok_fraction": r.core_fraction(FROM_S),
                "core_ok_fraction_outside_tunings": r.core_fraction(FROM_S, outside_tuning=True),
                "windows": len(ws),
                "monitor_windows": len(mon),
                "objective": r.objective(FROM_S),
                "tunings": [
                    {k: e.get(k) for k in ("t", "kind", "trials", "seconds", "objective", "context")}
                    for e in r.tunings()
                ],
                "outcome": r.outcome(),
                "run_dir": str(r.run_dir),
                "wall_s": round(r.wall_s, 1),
            }
            rows.append(
                row(
                    f"{scen}: core held, {name} (from {FROM_S:.0f} s, tunings included)",
                    segment_fractions(ws) or [0.0],
                    "fraction",
                    "higher",
                    params={"windows": len(ws)},
                )
            )
            outside = [w for w in ws if w.state not in ("tuning", "verifying")]
            if outside:
                rows.append(
                    row(
                        f"{scen}: core held, {name} (from {FROM_S:.0f} s, outside tunings)",
                        segment_fractions(outside),
                        "fraction",
                        "higher",
                        params={"windows": len(outside)},
                    )
                )
            # One run per policy, so the robot's outcome is a note, not a row (rows need n >= 3).
            o = r.outcome()
            if o.get("goals_reached") is not None:
                notes.append(
                    f"{scen}, {name}: robot reached {o['goals_reached']} goal(s), {o['collisions']} collision(s), "
                    f"cmd_vel {o['cmd_vel_rate_hz'] or 0:.1f} Hz, tracking error {o['tracking_mean_m'] or 0:.3f} m"
                )
            if name.startswith("configbot"):
                all_trials += [float(e["trials"]) for e in r.tunings()]
                all_seconds += [float(e["seconds"]) for e in r.tunings() if e.get("seconds") is not None]
        cb = runs.get("configbot")
        if cb is not None:
            mon = [w for w in cb.windows(FROM_S) if w.state == "monitoring"]
            target = 0.95 if feasible else None
            if not mon:
                notes.append(
                    f"{scen}: ConfigBot's run ended before any monitoring window after its tuning: the "
                    "after-convergence row counts 0 (unmeasured); rerun with a larger --tune_s"
                )
            rows.append(
                row(
                    f"{scen}: core held, configbot after convergence (monitor windows from {FROM_S:.0f} s)",
                    segment_fractions(mon) or [0.0],
                    "fraction",
                    "higher",
                    target=target,
                    params={"windows": len(mon), "reference_feasible": feasible},
                )
            )
            best = ref.get(scen, {}).get("objective_remeasured")
            obj = [w.objective for w in mon if w.objective is not None]
            if obj and best:
                thirds = [
                    sum(p) / len(p)
                    for p in (
                        obj[: len(obj) // 3],
                        obj[len(obj) // 3 : 2 * len(obj) // 3],
                        obj[2 * len(obj) // 3 :],
                    )
                    if p
                ]
                rows.append(
                    row(
                        f"{scen}: objective, configbot vs reference search best (re-measured)",
                        thirds,
                        "",
                        "higher",
                        baseline="reference 60-trial search",
                        baseline_values=[best],
                        target=0.9,
                    )
                )
            default = runs.get("default")
            if default is not None and default.core_fraction(FROM_S) is not None:
                rows.append(
                    row(
                        f"{scen}: core held, configbot vs default (tunings included)",
                        segment_fractions(cb.windows(FROM_S)),
                        "fraction",
                        "higher",
                        baseline="default (no quotas)",
                        baseline_values=segment_fractions(default.windows(FROM_S)),
                    )
                )
        lib = runs.get("configbot+library")
        for at, label in CHANGES.get(scen, []):
            if cb is None or lib is None:
                continue
            end = min(w.clock for w in cb.timeline.windows[-1:] if w.clock) if cb.timeline.windows else 0
            if at + 20 > (end or 0):
                continue
            a = recovery_s(cb.timeline.windows, at)
            b = recovery_s(lib.timeline.windows, at)
            sdoc.setdefault("recovery", []).append(
                {"change": label, "at_s": at, "scratch_s": a, "library_s": b}
            )
            if a is not None and b is not None:
                rec_scratch.append(a)
                rec_lib.append(b)
        doc["scenarios"][scen] = sdoc
    if all_trials:
        rows.append(
            row(
                "trials to converge, each tuning (all scenarios, configbot runs)",
                all_trials,
                "trials",
                "lower",
                target=10,
            )
        )
    if all_seconds:
        rows.append(
            row(
                "seconds to converge, each tuning (all scenarios, configbot runs)",
                all_seconds,
                "s",
                "lower",
            )
        )
    if rec_lib:
        rows.append(
            row(
                "seconds to recover after a scenario change, with the library",
                [max(v, 1.0) for v in rec_lib],
                "s",
                "lower",
                baseline="from scratch",
                baseline_values=[max(v, 1.0) for v in rec_scratch],
                target=3.0,
            )
        )
        notes.append("recovery floors at 1 s (one window) so a ratio exists when both recover at once")
    if reference is None:
        notes.append(
            "no reference search stored (bench/configbot/reference.json): run `tether bench configbot --reference` once"
        )
    else:
        notes.append(f"reference search from {reference['date']}: {reference['settings']['sampler']}")
    return rows, doc, notes
