"""`tether bench configbot`: ConfigBot (arXiv 2501.10513) against the default, a static even split and a hand-tuned
configuration on each scenario of the simulated robot, in one run; recovery with and without the context library.

    tether bench configbot              the full run (up to 45 minutes; full.py)
    tether bench configbot --quick      < 60 s, two worker nodes under an emulated power mode (quick.py)
    tether bench configbot --reference  once: the 60-trial reference search per scenario (reference.py),
                                        stored in bench/configbot/reference.json; its table goes to <out>/reference/
    tether bench configbot --lm         beyond the robot: the LM server's max_batch_size against TTFT p99 (lm.py);
                                        its table goes to <out>/lm/ (--lm_rate=1.0 req/s, --lm_ttft_ms=3000)
Options: --scenarios=a,b  --base_s=100 (static policies' runs)  --tune_s=240 (ConfigBot's, with changes)
"""

from __future__ import annotations

import json
from pathlib import Path

from tether.bench import BenchContext, BenchReport

__all__ = ["SPEC", "run"]

SPEC = Path(__file__).resolve().parents[2] / "edge" / "configbot" / "specs" / "sim_robot.yaml"


def run(ctx: BenchContext) -> BenchReport:
    if ctx.options.get("reference"):
        from tether.bench.configbot.reference import run_reference

        scen = tuple(
            s for s in ctx.options.get("scenarios", "nominal,crowded,contention,power_drop").split(",") if s
        )
        report = run_reference(ctx, SPEC, scen)
        ctx.out_dir = ctx.out_dir / "reference"  # keep the main results file where it is
        return report
    if ctx.options.get("lm"):
        from tether.bench.configbot.lm import run_lm

        rows, doc, notes = run_lm(ctx)
        (ctx.out_dir / "configbot_lm" / "summary.json").write_text(json.dumps(doc, indent=2, default=str))
        ctx.out_dir = ctx.out_dir / "lm"
        return BenchReport(rows=rows, notes=notes)
    if ctx.quick:
        from tether.bench.configbot.quick import run_quick

        rows, doc, notes = run_quick(ctx)
        (ctx.out_dir / "configbot_quick" / "summary.json").write_text(json.dumps(doc, indent=2, default=str))
        return BenchReport(
            rows=rows, plot=lambda path: _plot_quick(ctx.out_dir / "configbot_quick", path), notes=notes
        )
    from tether.bench.configbot.full import run_full

    rows, doc, notes, results = run_full(ctx, SPEC)
    (ctx.out_dir / "configbot_runs" / "summary.json").write_text(json.dumps(doc, indent=2, default=str))
    return BenchReport(rows=rows, plot=lambda path: _plot_full(results, path), notes=notes)


def _plot_quick(folder: Path, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4))
    for name in ("default", "configbot"):
        f = folder / name / "timeline.jsonl"
        if not f.is_file():
            continue
        ws = [json.loads(line) for line in f.read_text().splitlines() if '"window"' in line]
        ax.plot([w["t"] for w in ws], [w["values"].get("rate(/core/out)") for w in ws], label=name)
    ax.axhline(28, color="k", ls="--", lw=1, label="core minimum (28 Hz)")
    ax.set_xlabel("s")
    ax.set_ylabel("core rate, Hz")
    ax.legend()
    ax.set_title("ConfigBot quick: the core node under a 0.2-core stack")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_full(results, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scen = list(results)
    fig, axes = plt.subplots(len(scen) + 1, 1, figsize=(12, 3.0 * (len(scen) + 1)))
    axes = list(axes) if len(scen) else [axes]
    colors = {"default": "C7", "even": "C1", "hand": "C2", "configbot": "C0", "configbot+library": "C4"}
    for ax, s in zip(axes, scen):
        for name, r in results[s].items():
            ws = [w for w in r.timeline.windows if w.clock is not None]
            key = "rate(/cmd_vel)"
            ax.plot(
                [w.clock for w in ws],
                [w.values.get(key) for w in ws],
                lw=1,
                label=name,
                color=colors.get(name),
            )
            if name == "configbot":
                for a, b, _ in r.timeline.trial_spans():
                    ca = next((w.clock for w in ws if w.t >= a), None)
                    cb = next((w.clock for w in ws if w.t >= b), None)
                    if ca is not None and cb is not None:
                        ax.axvspan(ca, cb, color="C0", alpha=0.08)
        ax.set_ylim(0, 40)  # cmd_vel runs at 30 Hz at most; a start-up burst must not squash the picture
        ax.axhline(24, color="k", ls="--", lw=1)
        ax.axvline(60, color="k", ls=":", lw=1)
        ax.set_title(
            f"{s}: cmd_vel (Hz) on the simulator's clock; dashed: the 24 Hz minimum; shaded: ConfigBot's trials",
            fontsize=9,
        )
        ax.legend(fontsize=7, loc="lower right")
    ax = axes[-1]
    width = 0.15
    names = ["default", "even", "hand", "configbot", "configbot+library"]
    for i, name in enumerate(names):
        vals = [results[s][name].core_fraction(60.0) or 0.0 if name in results[s] else 0.0 for s in scen]
        ax.bar([j + i * width for j in range(len(scen))], vals, width, label=name, color=colors[name])
    ax.set_xticks([j + 2 * width for j in range(len(scen))], scen)
    ax.axhline(0.95, color="k", ls="--", lw=1)
    ax.set_ylabel("windows with core held (from 60 s)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
