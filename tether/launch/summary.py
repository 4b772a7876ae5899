"""What a launch did: per process, its starts, how each run ended, and its uptime."""

from __future__ import annotations

import signal
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

__all__ = ["ExitRecord", "LaunchSummary", "ProcessSummary", "StopReason", "describe_returncode"]


class StopReason(str, Enum):
    """Why the launch ended."""

    ALL_EXITED = "all processes exited"
    DURATION = "duration reached"
    INTERRUPTED = "interrupted (SIGINT)"
    TERMINATED = "terminated (SIGTERM)"
    REQUESTED = "shutdown requested"


def describe_returncode(rc: int | None) -> str:
    """'exit code 1', 'signal SIGKILL (-9)', or 'did not start'."""
    if rc is None:
        return "did not start"
    if rc < 0:
        try:
            return f"signal {signal.Signals(-rc).name} ({rc})"
        except ValueError:
            return f"signal {-rc} ({rc})"
    return f"exit code {rc}"


@dataclass(frozen=True)
class ExitRecord:
    """One run of a process, from start to exit."""

    pid: int
    returncode: int | None  # None: it never started (see `error`); < 0: killed by signal -returncode
    uptime_s: float
    during_shutdown: bool  # the launcher was stopping it
    stopped_with: str | None  # the last stop signal sent before it exited ("SIGINT", "SIGTERM", "SIGKILL")
    error: str | None = None

    @property
    def crashed(self) -> bool:
        """Ended on its own with a failure (a non-zero code, a signal, or it could not start)."""
        return not self.during_shutdown and self.returncode != 0

    def describe(self) -> str:
        text = describe_returncode(self.returncode)
        if self.during_shutdown:
            return f"stopped by {self.stopped_with}: {text}" if self.stopped_with else f"stopped: {text}"
        return ("crashed: " if self.crashed else "finished: ") + text


@dataclass(frozen=True)
class ProcessSummary:
    label: str
    kind: str
    starts: int
    exits: tuple[ExitRecord, ...]
    log_file: Path | None = None

    @property
    def returncodes(self) -> list[int | None]:
        return [e.returncode for e in self.exits]

    @property
    def crashes(self) -> int:
        return sum(e.crashed for e in self.exits)

    @property
    def uptime_s(self) -> float:
        return sum(e.uptime_s for e in self.exits)


@dataclass(frozen=True)
class LaunchSummary:
    reason: StopReason
    wall_s: float
    processes: tuple[ProcessSummary, ...]
    log_dir: Path | None = None

    @property
    def ok(self) -> bool:
        """No process crashed (exits during the launcher's own shutdown do not count)."""
        return all(p.crashes == 0 for p in self.processes)

    def process(self, label: str) -> ProcessSummary:
        for p in self.processes:
            if p.label == label:
                return p
        raise KeyError(f"no process labelled {label!r}; labels: {', '.join(p.label for p in self.processes)}")

    def rows(self) -> list[tuple[str, str, str, str, str]]:
        """(process, kind, starts, last exit, uptime) per process, for a table."""
        out = []
        for p in self.processes:
            last = p.exits[-1].describe() if p.exits else "-"
            if p.crashes and len(p.exits) > 1:
                last += f" ({p.crashes} crash(es) in {len(p.exits)} runs)"
            out.append((p.label, p.kind, str(p.starts), last, f"{p.uptime_s:.1f} s"))
        return out

    def format(self) -> str:
        """A plain-text table (the CLI prints a rich one)."""
        header = ("process", "kind", "starts", "last exit", "uptime")
        rows = [header, *self.rows()]
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        lines = [f"launch ended: {self.reason.value} after {self.wall_s:.1f} s"]
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        if self.log_dir is not None:
            lines.append(f"logs: {self.log_dir}")
        return "\n".join(lines)
