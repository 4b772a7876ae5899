"""Running a launch description: one OS process per node, prefixed output, respawn, orderly shutdown.

`LaunchService(description).run()` starts every process in its own session (so a terminal's
Ctrl-C reaches only the launcher, which forwards it, and signals go to each process group by
its pid), supervises them until all have exited, the `duration` ends, or SIGINT/SIGTERM
arrives, then stops the rest as ros2 launch does: SIGINT, SIGTERM after `sigterm_timeout`,
SIGKILL after `sigkill_timeout` (a Python process with an open Zenoh session can ignore
SIGTERM: research/bus.md). A second Ctrl-C skips the waits. It returns a `LaunchSummary`.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO

import yaml

from tether.launch.description import LaunchDescription, ParamFile, ProcessDescription
from tether.launch.hooks import ProcessHook, ProcessInfo
from tether.launch.summary import ExitRecord, LaunchSummary, ProcessSummary, StopReason, describe_returncode

__all__ = ["LaunchService"]

_COLOURS = ("36", "32", "33", "35", "34", "96", "92", "93", "95", "94")  # ANSI foreground codes
_ESCALATION = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)
_KILL_GRACE_S = 5.0  # after SIGKILL, how long to wait before reporting a process as unkillable


class _Proc:
    """The launcher's book-keeping for one described process across its (re)starts."""

    def __init__(self, desc: ProcessDescription, label: str, colour: str | None) -> None:
        self.desc, self.label, self.colour = desc, label, colour
        node = desc.node
        self.info = ProcessInfo(
            label=label,
            kind=desc.kind,
            node_name=node.name if node else None,
            namespace=node.namespace if node else None,
            pkg=node.pkg if node else None,
            exec=node.exec if node else None,
            command=desc.command,
            launch_args=dict(desc.launch_args),
        )
        self.popen: subprocess.Popen | None = None
        self.reader: threading.Thread | None = None
        self.log: IO[str] | None = None
        self.log_file: Path | None = None
        self.argv: list[str] | None = None
        self.next_start: float | None = None  # monotonic time of the next (re)start, None: none due
        self.started_at = 0.0
        self.starts = 0
        self.exits: list[ExitRecord] = []
        self.stage = -1  # index into _ESCALATION of the last stop signal sent
        self.deadline = 0.0


class LaunchService:
    """Runs one `LaunchDescription`. `run()` blocks; `shutdown()` may be called from any thread."""

    def __init__(
        self,
        description: LaunchDescription,
        *,
        hooks: Iterable[ProcessHook] = (),
        duration: float | None = None,
        log_dir: Path | None = None,
        output: IO[str] | Callable[[str], None] | None = None,
        colour: bool | None = None,
        environ: dict[str, str] | None = None,
        poll_interval: float = 0.02,
    ) -> None:
        self.description = description
        self.hooks = list(hooks)
        self.duration = duration if duration and duration > 0 else None
        self._log_dir = log_dir
        self._output = output
        self._colour = colour
        self._environ = environ
        self._poll = poll_interval
        self._stop = threading.Event()
        self._hurry = threading.Event()
        self._reason: StopReason | None = None
        self._stopping = False
        self._lock = threading.Lock()
        self._tmp: Path | None = None
        self.log_dir: Path | None = None
        self._procs: list[_Proc] = []

    # -- public -------------------------------------------------------------------------------
    def shutdown(self, reason: StopReason = StopReason.REQUESTED) -> None:
        """Ask `run()` to stop every process (thread-safe; a second call skips the escalation waits)."""
        if self._stop.is_set():
            self._hurry.set()
            return
        self._reason = reason
        self._stop.set()

    def run(self) -> LaunchSummary:
        """Start every process, supervise until the end condition, stop the rest; the summary."""
        from tether.settings import process_environ

        write = self._writer()
        self._write = write
        colour = (
            self._colour
            if self._colour is not None
            else bool(getattr(self._output or sys.stdout, "isatty", lambda: False)())
        )
        counts: dict[str, int] = {}
        for i, desc in enumerate(self.description.processes):
            counts[desc.name] = counts.get(desc.name, 0) + 1
            label = f"{desc.name}-{counts[desc.name]}"
            self._procs.append(_Proc(desc, label, _COLOURS[i % len(_COLOURS)] if colour else None))
        base_env = process_environ() if self._environ is None else dict(self._environ)
        self._base_env = base_env
        for warning in self.description.warnings:
            self._say("WARN", "launch", warning)
        restore = self._install_signal_handlers()
        t0 = time.monotonic()
        try:
            for p in self._procs:
                p.next_start = t0
            self._supervise(t0)
        finally:
            try:
                self._stop_all()  # also when supervising failed: no process outlives its launcher's run()
            finally:
                restore()
                for p in self._procs:
                    if p.log is not None:
                        p.log.close()
                if self._tmp is not None:
                    shutil.rmtree(self._tmp, ignore_errors=True)
        wall = time.monotonic() - t0
        summary = LaunchSummary(
            reason=self._reason or StopReason.ALL_EXITED,
            wall_s=wall,
            processes=tuple(
                ProcessSummary(p.label, p.desc.kind, p.starts, tuple(p.exits), p.log_file)
                for p in self._procs
            ),
            log_dir=self.log_dir,
        )
        return summary

    # -- supervision --------------------------------------------------------------------------
    def _supervise(self, t0: float) -> None:
        while True:
            now = time.monotonic()
            for p in self._procs:
                if p.popen is not None and (rc := p.popen.poll()) is not None:
                    self._reaped(p, rc)
            if self._stop.is_set():
                return
            for p in self._procs:
                if p.popen is None and p.next_start is not None and now >= p.next_start:
                    self._start(p)
            if self.duration is not None and now - t0 >= self.duration:
                self._reason = StopReason.DURATION
                self._say("INFO", "launch", f"duration of {self.duration:g} s reached; stopping")
                return
            if all(p.popen is None and p.next_start is None for p in self._procs):
                self._reason = StopReason.ALL_EXITED
                return
            self._stop.wait(self._poll)

    def _start(self, p: _Proc) -> None:
        p.next_start = None
        if p.argv is None:
            p.argv = self._argv(p)
        env = dict(self._base_env)
        env["PYTHONUNBUFFERED"] = "1"  # line by line output from Python nodes, as ros2 launch sets it
        for key, value in p.desc.env.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        if p.desc.output in ("log", "both") and p.log is None:
            p.log_file = self._ensure_log_dir() / f"{p.label}.log"
            p.log = p.log_file.open("a", buffering=1)
        try:
            p.popen = subprocess.Popen(
                p.argv[0] if p.desc.shell else p.argv,
                shell=p.desc.shell,
                cwd=p.desc.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own session and process group: we signal it by its pid
            )
        except OSError as exc:
            # A program that cannot start will not start on a respawn either: reported, not retried.
            p.exits.append(
                ExitRecord(
                    pid=0,
                    returncode=None,
                    uptime_s=0.0,
                    during_shutdown=False,
                    stopped_with=None,
                    error=f"{type(exc).__name__}: {exc}",
                )
            )
            self._say("ERROR", p.label, f"failed to start {p.argv[0]!r}: {exc}")
            return
        p.started_at = time.monotonic()
        p.starts += 1
        p.stage = -1
        p.reader = threading.Thread(
            target=self._pump, args=(p, p.popen.stdout), daemon=True, name=f"launch-output-{p.label}"
        )
        p.reader.start()
        self._say("INFO", p.label, f"process started with pid [{p.popen.pid}]")
        for hook in self.hooks:
            self._call_hook(hook, "on_start", p.info, p.popen.pid)

    def _argv(self, p: _Proc) -> list[str]:
        argv = list(p.desc.command)
        node = p.desc.node
        if node is None:
            return argv
        files: list[Path] = []
        for i, src in enumerate(node.params):
            if isinstance(src, ParamFile):
                files.append(src.path)
                continue
            if self._tmp is None:
                self._tmp = Path(tempfile.mkdtemp(prefix="tether-launch-"))
            path = self._tmp / f"{p.label}-params-{i}.yaml"
            path.write_text(yaml.safe_dump(src.as_ros_parameters(), sort_keys=False))
            files.append(path)
        return argv + node.ros_argv(files)

    def _reaped(self, p: _Proc, rc: int) -> None:
        assert p.popen is not None  # noqa: S101 - internal invariant, not input checking
        pid = p.popen.pid
        if p.reader is not None:
            p.reader.join(timeout=2.0)  # its last lines first, then the exit report
        uptime = time.monotonic() - p.started_at
        stopped_with = _ESCALATION[p.stage].name if p.stage >= 0 else None
        p.exits.append(ExitRecord(pid, rc, uptime, self._stopping, stopped_with))
        p.popen = None
        if self._stopping:
            how = f" after {stopped_with}" if stopped_with else ""
            self._say("INFO", p.label, f"process stopped{how} [pid {pid}, {describe_returncode(rc)}]")
            _signal_group(pid, signal.SIGKILL)  # what it left behind in its group (a shell's children)
        elif rc == 0:
            self._say("INFO", p.label, f"process has finished cleanly [pid {pid}]")
        else:
            self._say(
                "ERROR",
                p.label,
                f"process has died [pid {pid}, {describe_returncode(rc)}, cmd '{' '.join(p.argv or ())}']",
            )
        for hook in self.hooks:
            self._call_hook(hook, "on_exit", p.info, pid, rc)
        retries = p.starts - 1
        if not self._stopping and p.desc.respawn and not self._stop.is_set():
            if p.desc.respawn_max_retries < 0 or retries < p.desc.respawn_max_retries:
                p.next_start = time.monotonic() + p.desc.respawn_delay
                self._say("INFO", p.label, f"respawning in {p.desc.respawn_delay:g} s")
            else:
                self._say(
                    "WARN", p.label, f"not respawning: {retries} respawn(s) reached respawn_max_retries"
                )

    def _stop_all(self) -> None:
        """SIGINT every running process, then SIGTERM, then SIGKILL, each after its timeout."""
        self._stopping = True
        for p in self._procs:
            p.next_start = None  # pending respawns are cancelled
        running = [p for p in self._procs if p.popen is not None]
        if running:
            self._say(
                "INFO", "launch", f"stopping {len(running)} process(es): SIGINT, then SIGTERM, then SIGKILL"
            )
        for p in running:
            self._escalate(p)
        while running:
            now = time.monotonic()
            for p in running:
                if (rc := p.popen.poll()) is not None:
                    self._reaped(p, rc)
                elif now >= p.deadline or self._hurry.is_set():
                    if p.stage + 1 < len(_ESCALATION):
                        self._escalate(p)
                    elif now >= p.deadline:
                        self._say("ERROR", p.label, f"pid {p.popen.pid} survived SIGKILL; leaving it")
                        p.popen = None
            running = [p for p in running if p.popen is not None]
            time.sleep(self._poll)

    def _escalate(self, p: _Proc) -> None:
        p.stage += 1
        sig = _ESCALATION[p.stage]
        if p.stage > 0:
            self._say("WARN", p.label, f"still running; sending {sig.name}")
        _signal_group(p.popen.pid, sig)
        wait = (p.desc.sigterm_timeout, p.desc.sigkill_timeout, _KILL_GRACE_S)[p.stage]
        p.deadline = time.monotonic() + wait

    # -- output -------------------------------------------------------------------------------
    def _pump(self, p: _Proc, pipe: IO[bytes]) -> None:
        screen = p.desc.output in ("screen", "both")
        prefix = f"\x1b[{p.colour}m[{p.label}]\x1b[0m" if p.colour else f"[{p.label}]"
        with pipe:
            for raw in iter(pipe.readline, b""):
                text = raw.decode(errors="replace").rstrip("\r\n")
                if screen:
                    self._write(f"{prefix} {text}")
                if p.log is not None:
                    try:
                        p.log.write(text + "\n")
                    except ValueError:  # closed at the end of run(): a grandchild still holds the pipe
                        pass

    def _say(self, level: str, who: str, message: str) -> None:
        self._write(f"[{level}] [{who}]: {message}")

    def _writer(self) -> Callable[[str], None]:
        out = self._output
        if callable(out) and not hasattr(out, "write"):
            return out

        def write(line: str) -> None:
            stream = out or sys.stdout
            with self._lock:
                stream.write(line + "\n")
                stream.flush()

        return write

    def _ensure_log_dir(self) -> Path:
        if self.log_dir is None:
            from tether.settings import settings

            stamp = time.strftime("%Y%m%d-%H%M%S")
            self.log_dir = (
                self._log_dir or settings().artefacts / "logs" / "launch" / f"{stamp}-{os.getpid()}"
            )
            self.log_dir.mkdir(parents=True, exist_ok=True)
        return self.log_dir

    # -- hooks and signals --------------------------------------------------------------------
    def _call_hook(self, hook: ProcessHook, method: str, *args: object) -> None:
        try:
            getattr(hook, method)(*args)
        except Exception as exc:  # a hook is advisory (placement, accounting): report and go on
            self._say(
                "WARN",
                "launch",
                f"hook {type(hook).__name__}.{method} failed for {args[0].label}: "
                f"{type(exc).__name__}: {exc}",
            )

    def _install_signal_handlers(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None  # the owner of a background launch calls shutdown() itself

        def on_signal(signum: int, _frame: object) -> None:
            if self._stop.is_set():
                self._say("WARN", "launch", f"{signal.Signals(signum).name} again: escalating now")
            reason = StopReason.INTERRUPTED if signum == signal.SIGINT else StopReason.TERMINATED
            self.shutdown(reason)

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}

        def restore() -> None:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

        return restore


def _signal_group(pid: int, sig: signal.Signals) -> None:
    """Signal the process group our child leads (its pgid is its pid: start_new_session)."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
