"""ConfigBot's live view and end report as text: specification status, current configuration, trial history.

The view renders a status snapshot (`ConfigBot.status()`, also published as JSON on
`/configbot/status` by the ConfigBot node), so the same panel shows in `tether configbot tune`,
`tether configbot view` and `tether up`.
"""

from __future__ import annotations

import json
import time
from typing import Any

__all__ = ["StatusWatcher", "UpView", "format_report", "render_status"]


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def render_status(status: dict[str, Any] | None):
    """A rich renderable of one status snapshot."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table

    if not status:
        return Panel("waiting for ConfigBot's status on /configbot/status ...", title="ConfigBot")
    head = (
        f"spec [bold]{status['spec']}[/]  mode {status['mode']}  state [bold]{status['state']}[/]"
        f"  t={status['t']:.0f}s  context {status.get('context') or '-'}"
        f"  trials {status.get('trials_total', 0)} in {status.get('tunings', 0)} tuning(s)"
    )
    cons = Table(title="specification", expand=False, show_edge=False)
    for col in ("constraint", "now", "holds"):
        cons.add_column(col)
    for c in status.get("constraints", []):
        ok = c.get("ok")
        mark = "-" if ok is None else ("[green]yes[/]" if ok else "[red]no[/]")
        cons.add_row(c["label"] + ("" if c.get("core") else " (non-core)"), _fmt(c.get("value")), mark)
    cons.add_row("objective", _fmt(status.get("objective")), "")
    vf = status.get("violation_fraction")
    cons.add_row("violating windows (recent)", "-" if vf is None else f"{vf:.0%}", "")
    cfg = Table(title="configuration", expand=False, show_edge=False)
    cfg.add_column("knob")
    cfg.add_column("value")
    for k, v in sorted(status.get("config", {}).items()):
        cfg.add_row(k, _fmt(v))
    hist = Table(title="trials (latest)", expand=False, show_edge=False)
    for col in ("#", "t", "outcome", "feasible", "objective"):
        hist.add_column(col)
    for t in status.get("trials", [])[-8:]:
        hist.add_row(
            "lib" if t["trial"] == -1 else str(t["trial"]),
            f"{t['t']:.0f}",
            t["outcome"],
            _fmt(t.get("feasible")),
            _fmt(t.get("objective")),
        )
    parts: list[Any] = [head, Group(cons), Group(cfg), Group(hist)]
    if status.get("infeasible"):
        parts.append(
            f"[red]infeasible[/] in {status['infeasible']['context']}: best found {status['infeasible']['best_found']}"
        )
    for m in status.get("messages", [])[-3:]:
        parts.append(f"[yellow]note[/]: {m}")
    if status.get("error"):
        parts.append(f"[red]error[/]: {status['error']}")
    return Panel(Group(*parts), title="ConfigBot")


def format_report(report: dict[str, Any]) -> str:
    """The end report as plain lines."""
    s = report.get("summary", {})
    lines = [
        f"ConfigBot report: spec {report['spec']} ({report['mode']}), {report['duration_s']:.0f} s, state {report['state']}",
    ]
    if report.get("error"):
        lines.append(f"  error: {report['error']}")
    frac = s.get("core_ok_fraction")
    out = s.get("core_ok_fraction_outside_trials")
    lines.append(
        f"  windows with every core constraint holding: {'-' if frac is None else f'{frac:.1%}'} of {s.get('windows')}"
        f" ({'-' if out is None else f'{out:.1%}'} outside trials)"
    )
    lines.append(
        f"  objective (mean): {_fmt(s.get('objective_mean'))}; trials {s.get('trials')} in {s.get('tunings')} tuning(s)"
    )
    for e in report.get("events", []):
        if e["kind"] in (
            "converged",
            "infeasible",
            "library_hit",
            "context",
            "violation",
            "rollback",
            "crash",
            "error",
        ):
            detail = {k: v for k, v in e.items() if k not in ("t", "kind", "values")}
            lines.append(f"  {e['t']:7.1f}s {e['kind']}: {json.dumps(detail, default=str)[:200]}")
    if report.get("best"):
        lines.append(f"  configuration in force: {report['best']['config']}")
    if report.get("infeasible"):
        lines.append(f"  INFEASIBLE: best found {report['infeasible']['best_found']}")
    for m in report.get("messages", []):
        lines.append(f"  note: {m}")
    lines.append(f"  timeline: {report.get('timeline_png')}; study: {report.get('optuna_storage')}")
    return "\n".join(lines)


class StatusWatcher:
    """The latest ConfigBot status heard on the bus (`/configbot/status`, JSON in std_msgs/String)."""

    def __init__(self, node, topic: str = "/configbot/status") -> None:
        from tether.bus import get_type

        self.latest: dict[str, Any] | None = None
        self.seen = 0.0
        node.create_subscription(get_type("std_msgs/msg/String"), topic, self._on, 10)

    def _on(self, msg) -> None:
        try:
            self.latest = json.loads(msg.data)
            self.seen = time.monotonic()
        except ValueError:
            pass


class UpView:
    """ConfigBot's panel in `tether up` (entry point `tether.up_views`): its live status while the stack runs,
    its report and PNG timeline at the end (written by the ConfigBot node as it stops)."""

    def __init__(self, node) -> None:
        self.watcher = StatusWatcher(node)

    def render(self):
        return render_status(self.watcher.latest) if self.watcher.latest else None

    def finish(self, wait_s: float = 10.0) -> str | None:
        from pathlib import Path

        if not self.watcher.latest:
            return None
        report = Path(self.watcher.latest["run_dir"]) / "report.json"
        end = time.monotonic() + wait_s
        while not report.is_file() and time.monotonic() < end:
            time.sleep(0.2)
        if not report.is_file():
            return f"ConfigBot wrote no report (see {report.parent})"
        return format_report(json.loads(report.read_text()))
