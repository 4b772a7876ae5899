"""What ConfigBot saw and did, second by second: the record behind its live view, its report and its plot.

Every second ConfigBot scores the last second against the specification (a window); events
mark what it did (a trial and its result, a configuration applied, a context change, a
rollback, a crash, convergence). The timeline streams to `timeline.jsonl` in the run folder;
`summary()` reduces it to the report's figures, `plot()` draws the PNG timeline: core signals
against their thresholds, the objective, the knob values, with trials shaded and events marked.
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tether.edge.configbot.spec import Spec

__all__ = ["Timeline", "Window"]


@dataclass
class Window:
    t: float  # seconds since ConfigBot started, at the window's end
    values: dict[str, float | None]
    core_ok: bool
    feasible: bool
    objective: float | None
    state: str
    trial: int | None  # the trial running in this window, if any
    context: str | None = None
    clock: float | None = None  # simulated time (/clock) at the window's end, where there is a simulator


@dataclass
class Timeline:
    spec: Spec
    path: Path | None = None  # timeline.jsonl, streamed
    windows: list[Window] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._fh = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self.path.open("w")

    def _write(self, kind: str, doc: dict) -> None:
        if self._fh is not None:
            self._fh.write(json.dumps({"type": kind, **doc}, default=_jsonable) + "\n")
            self._fh.flush()

    def window(self, w: Window) -> None:
        with self._lock:
            self.windows.append(w)
            self._write("window", asdict(w))

    def event(self, t: float, kind: str, **data: Any) -> dict:
        ev = {"t": round(t, 3), "kind": kind, **data}
        with self._lock:
            self.events.append(ev)
            self._write("event", ev)
        return ev

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None

    # -- reading -----------------------------------------------------------------------------
    @classmethod
    def load(cls, spec: Spec, path: Path) -> Timeline:
        tl = cls(spec)
        for line in path.read_text().splitlines():
            doc = json.loads(line)
            kind = doc.pop("type")
            if kind == "window":
                tl.windows.append(Window(**doc))
            else:
                tl.events.append(doc)
        return tl

    def trial_spans(self) -> list[tuple[float, float, int]]:
        """(start, end, trial number) of each trial: settle and measure."""
        spans, start = [], None
        for e in self.events:  # each tuning numbers its trials from 0: pair each end with the start before it
            if e["kind"] == "trial_start":
                start = e
            elif e["kind"] == "trial_end" and start is not None:
                spans.append((start["t"], e["t"], e["trial"]))
                start = None
        return spans

    def summary(self, from_s: float = 0.0, until_s: float | None = None) -> dict[str, Any]:
        """Fractions of windows with every core constraint holding (all; outside tunings), objective, trials."""
        ws = [w for w in self.windows if w.t > from_s and (until_s is None or w.t <= until_s)]
        outside = [w for w in ws if w.state not in ("tuning", "verifying")]  # not while a tuning runs
        objs = [w.objective for w in ws if w.objective is not None and math.isfinite(w.objective)]
        trials = [e for e in self.events if e["kind"] == "trial_end"]
        conv = [e for e in self.events if e["kind"] in ("converged", "infeasible")]
        return {
            "windows": len(ws),
            "core_ok_fraction": sum(w.core_ok for w in ws) / len(ws) if ws else None,
            "core_ok_fraction_outside_trials": sum(w.core_ok for w in outside) / len(outside)
            if outside
            else None,
            "windows_outside_trials": len(outside),
            "objective_mean": sum(objs) / len(objs) if objs else None,
            "trials": len(trials),
            "tunings": len(conv),
            "converged": conv[-1] if conv else None,
        }

    # -- the picture ----------------------------------------------------------------------------
    def plot(
        self, path: Path, title: str = "", scenario_events: list[tuple[float, str]] | None = None
    ) -> None:
        """Core signals / threshold, the objective and the knobs (normalised to their bounds) over time."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        spec = self.spec
        fig, axes = plt.subplots(3, 1, figsize=(11, 8), sharex=True, height_ratios=[3, 1.5, 2])
        t = [w.t for w in self.windows]
        ax = axes[0]
        for c in spec.constraints:
            key = c.signal(spec.namespace).key
            bound = c.min if c.min is not None else c.max
            ys = [
                (w.values.get(key) / bound) if w.values.get(key) is not None and bound else float("nan")
                for w in self.windows
            ]
            ax.plot(t, ys, lw=1.2, label=f"{c.label(spec.namespace)}{'' if c.core else ' (non-core)'}")
        ax.axhline(1.0, color="k", ls="--", lw=1, label="threshold")
        ax.set_ylabel("signal / threshold")
        ax.legend(loc="upper right", fontsize=7)
        axes[1].plot(
            t, [w.objective if w.objective is not None else float("nan") for w in self.windows], color="C2"
        )
        axes[1].set_ylabel("objective")
        ax = axes[2]
        applied = [e for e in self.events if e["kind"] == "apply"]
        for i, knob in enumerate(spec.knobs):
            xs, ys = [], []
            for e in applied:
                v = e["config"].get(knob.key)
                if knob.choices is not None:
                    y = (
                        knob.choices.index(v) / max(len(knob.choices) - 1, 1)
                        if v in knob.choices
                        else float("nan")
                    )
                elif v is None:
                    y = 1.0
                else:
                    y = (float(v) - float(knob.min)) / (float(knob.max) - float(knob.min))  # type: ignore[arg-type]
                xs.append(e["t"])
                ys.append(y)
            if xs:
                xs.append(t[-1] if t else xs[-1])
                ys.append(ys[-1])
                ax.step(xs, ys, where="post", lw=1.2, label=knob.key, color=f"C{i % 10}")
        ax.set_ylabel("knob (0 = min, 1 = max)")
        ax.set_xlabel("seconds since ConfigBot started")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper right", fontsize=7)
        for a in axes:
            for s, e, _ in self.trial_spans():
                a.axvspan(s, e, color="0.9", zorder=0)
            for ev in self.events:
                if ev["kind"] in ("context", "rollback", "crash", "library_hit"):
                    color = {"context": "C4", "rollback": "C3", "crash": "C3"}.get(ev["kind"], "C1")
                    a.axvline(ev["t"], color=color, lw=0.8, ls=":")
                    if ev["kind"] == "context" and a is axes[0]:  # the change as ConfigBot saw it
                        a.annotate(
                            ev.get("context", ""),
                            (ev["t"], 0.02),
                            xycoords=("data", "axes fraction"),
                            fontsize=7,
                            rotation=90,
                            color="C4",
                        )
            for ts, label in scenario_events or []:
                a.axvline(ts, color="C5", lw=1.2)
                if a is axes[0]:
                    a.annotate(label, (ts, a.get_ylim()[1]), fontsize=7, rotation=90, va="top")
        fig.suptitle(title or f"ConfigBot: {spec.name} (grey: trials; dotted: context changes, rollbacks)")
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
        plt.close(fig)


def _jsonable(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    try:
        return float(x)
    except (TypeError, ValueError):
        return str(x)
