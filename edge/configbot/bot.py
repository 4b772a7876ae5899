"""ConfigBot's run-time loop: wait for the nodes, tune, then monitor, retune and reuse, safely.

The loop of ConfigBot (arXiv 2501.10513), online on the robot: every second it scores the last
second against the specification (the timeline's window), tracks the context, and puts replaced
nodes back in their groups with the current configuration. In `tune` mode it tunes at start
(tuning.py), then monitors: a core-constraint violation over the monitor window, or a new
context, starts a retune; a context the library knows gets its stored configuration, verified
over one trial's length before it is trusted. `static` applies one configuration and monitors;
`observe` changes nothing (the default policy: Linux fair share) and only measures.
"""

from __future__ import annotations

import enum
import json
import logging
import math
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tether.edge.configbot.actuators import ActuationError, ActuatorContext, Applier, build_actuators
from tether.edge.configbot.context import Context, ContextTracker
from tether.edge.configbot.evaluate import Evaluation, evaluate
from tether.edge.configbot.library import ContextLibrary
from tether.edge.configbot.profiler import Profiler
from tether.edge.configbot.spec import Spec
from tether.edge.configbot.timeline import Timeline, Window
from tether.edge.configbot.tuner import warm_up_sampler

__all__ = ["BotOptions", "ConfigBot", "Mode", "SpecRuntimeError", "State"]

log = logging.getLogger("tether.configbot")


class Mode(str, enum.Enum):
    TUNE = "tune"
    STATIC = "static"
    OBSERVE = "observe"


class State(str, enum.Enum):
    WAITING = "waiting"  # for the specification's nodes and topics
    TUNING = "tuning"
    VERIFYING = "verifying"  # a library configuration, before trusting it
    MONITORING = "monitoring"
    STOPPED = "stopped"
    ERROR = "error"


class SpecRuntimeError(RuntimeError):
    """The specification names what the bus does not have (a node, a topic). Not recoverable: fix the spec."""


@dataclass
class BotOptions:
    mode: Mode = Mode.TUNE
    static_config: dict[str, Any] = field(default_factory=dict)
    cgroups: bool = True  # place nodes in cgroups (False: leave them; quotas and weights are off)
    library: bool | None = None  # read the context library (None: the spec's context.library); always written
    sampler: str = "gp"
    run_dir: Path | None = None  # timeline.jsonl, report.json, timeline.png
    store_dir: Path | None = None  # studies.db (Optuna) and library.db
    wait_nodes_s: float = 60.0
    topic_grace_s: float = 30.0
    retune_backoff_s: float = (
        20.0  # after a tuning, before the next in that context; doubles per infeasible one
    )
    nvpmodel: str | None = None
    cgroup_root: Path | None = None
    run_id: str = field(default_factory=lambda: time.strftime("%Y%m%d-%H%M%S"))
    plot: bool = True  # draw timeline.png at the end


@dataclass
class Tick:
    window: Window
    evaluation: Evaluation
    context: Context | None
    context_changed: bool
    dead: list[str]
    restarted: list[str]


class ConfigBot:
    """One ConfigBot on one node. `run()` blocks until `stop()` or the duration; one thread drives everything."""

    def __init__(self, spec: Spec, node, options: BotOptions | None = None) -> None:
        self.spec = spec
        self.node = node
        self.opt = options or BotOptions()
        from tether.settings import settings

        store = self.opt.store_dir or settings().artefact_dir("configbot")
        store.mkdir(parents=True, exist_ok=True)
        self.storage = f"sqlite:///{store / 'studies.db'}"
        self.run_dir = self.opt.run_dir or settings().artefact_dir(
            "configbot", "runs", f"{spec.name}-{self.opt.run_id}"
        )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.profiler = Profiler(node, spec)
        ctx = ActuatorContext(spec, node, self.profiler, log)
        acts = (
            []
            if self.opt.mode is Mode.OBSERVE
            else build_actuators(
                ctx,
                cgroups=self.opt.cgroups,
                CgroupActuator={"root": self.opt.cgroup_root} if self.opt.cgroup_root else {},
                PowerModeActuator={"nvpmodel": self.opt.nvpmodel} if self.opt.nvpmodel else {},
            )
        )
        self.applier = Applier(acts, log)
        # The library is always written in tune mode; `library` (or the spec's) decides whether it is read.
        self.library_lookup = spec.context.library if self.opt.library is None else self.opt.library
        self.library = ContextLibrary(store / "library.db", spec) if self.opt.mode is Mode.TUNE else None
        self.tracker = ContextTracker(spec, self.profiler, self._power_mode)
        self.timeline = Timeline(spec, self.run_dir / "timeline.jsonl")
        self._pids: queue.SimpleQueue = queue.SimpleQueue()
        self.profiler.on_pid_change(lambda fqn, old, new: self._pids.put((fqn, old, new)))
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.t0 = time.monotonic()
        self._ticks: queue.SimpleQueue[Tick] = queue.SimpleQueue()
        self._ticker_stop = threading.Event()
        self._ticker_thread = threading.Thread(target=self._ticker, name="configbot-ticker", daemon=True)
        self.state = State.WAITING
        self.trial: int | None = None
        self.messages: list[str] = []
        self.history: list[dict[str, Any]] = []  # one summary per trial, for the live view
        self.last_good: dict[str, Any] | None = None
        self.last_eval: Evaluation | None = None
        self.best: dict[str, Any] | None = None  # the configuration in force after the last tuning
        self.infeasible: dict[str, Any] | None = None
        self.error: str | None = None
        self.tunings = 0
        self._tuned_at: dict[str, float] = {}  # fingerprint -> end of its last tuning (backoff)
        self._backoff: dict[str, float] = {}  # fingerprint -> seconds before it may be retuned

    # -- time and status ----------------------------------------------------------------------------
    def now(self) -> float:
        return time.monotonic() - self.t0

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set() or (self._deadline is not None and time.monotonic() >= self._deadline)

    def _power_mode(self) -> str | None:
        from tether.edge.configbot.actuators.cgroup import CgroupActuator
        from tether.edge.configbot.actuators.power import query_power_mode

        mode = query_power_mode(self.opt.nvpmodel)
        if mode is not None:
            return mode
        for a in self.applier.live:
            if isinstance(a, CgroupActuator) and a.manager is not None:
                q = a.manager.quota(None)
                return "full" if q is None else f"{q:.2f}cores"  # the emulated power mode: the stack's quota
        return None

    def status(self) -> dict[str, Any]:
        """A snapshot for the live view and the status topic."""
        with self._lock:
            ev = self.last_eval
            cons = []
            for i, c in enumerate(self.spec.constraints):
                key = c.signal(self.spec.namespace).key
                cons.append(
                    {
                        "label": c.label(self.spec.namespace),
                        "value": None if ev is None else ev.values.get(key),
                        "ok": None if ev is None else ev.violations[i] <= 0,
                        "core": c.core,
                    }
                )
            recent = self.timeline.windows[-int(self.spec.monitor.window_s) :]
            return {
                "spec": self.spec.name,
                "mode": self.opt.mode.value,
                "state": self.state.value,
                "t": round(self.now(), 1),
                "trial": self.trial,
                "context": None if self.tracker.current is None else self.tracker.current.fingerprint,
                "constraints": cons,
                "objective": None if ev is None else ev.objective,
                "violation_fraction": (sum(not w.core_ok for w in recent) / len(recent)) if recent else None,
                "config": dict(self.applier.current),
                "trials": self.history[-12:],
                "trials_total": len(self.history),
                "tunings": self.tunings,
                "infeasible": self.infeasible,
                "messages": list(self.messages),
                "error": self.error,
                "run_dir": str(self.run_dir),
            }

    def note(self, message: str) -> None:
        log.warning("%s", message)
        with self._lock:
            self.messages.append(message)

    # -- the one-second tick ------------------------------------------------------------------------------
    def _ticker(self) -> None:
        """Its own thread: score each second as it ends, so a slow optimiser step leaves no gap in the record."""
        due = self.t0 + 1.0
        while not self._ticker_stop.wait(max(0.0, due - time.monotonic())):
            now = time.monotonic()
            due = max(due + 1.0, now + 0.5)
            try:
                if len(self.profiler.wanted_topics) != len(self.profiler._subscribed):
                    self.profiler.subscribe_known_topics()
                values = self.profiler.measure(now - 1.0, now)
                ev = evaluate(self.spec, values)
                ctx, changed = self.tracker.update(now)
                timeout = self.spec.monitor.node_timeout_s
                dead = [f for f in self.profiler.nodes if not self.profiler.alive(f, timeout)]
                w = Window(
                    round(now - self.t0, 3),
                    values,
                    ev.core_ok,
                    ev.feasible,
                    ev.objective,
                    self.state.value,
                    self.trial,
                    ctx.fingerprint,
                    self.profiler.sim_clock,
                )
                self.timeline.window(w)
                with self._lock:
                    self.last_eval = ev
                if changed:
                    self.timeline.event(self.now(), "context", context=ctx.fingerprint)
                self._ticks.put(Tick(w, ev, ctx, changed, dead, []))
            except Exception:  # the record must go on whatever one second's measurement did
                log.exception("tick failed")

    def tick(self) -> Tick:
        """The control thread's next second: waits for the ticker's window (merging any it missed while busy),
        then puts replaced nodes back in their groups."""
        ticks: list[Tick] = []
        while not ticks:
            try:
                ticks.append(self._ticks.get(timeout=0.5))
            except queue.Empty:
                if self._stop.is_set() or not self._ticker_thread.is_alive():
                    break
        while True:
            try:
                ticks.append(self._ticks.get_nowait())
            except queue.Empty:
                break
        restarted = self._handle_pids()
        if not ticks:  # stopping: a last, unrecorded look
            now = time.monotonic()
            values = self.profiler.measure(now - 1.0, now)
            ev = evaluate(self.spec, values)
            w = Window(
                round(now - self.t0, 3),
                values,
                ev.core_ok,
                ev.feasible,
                ev.objective,
                self.state.value,
                self.trial,
            )
            return Tick(w, ev, self.tracker.current, False, [], restarted)
        last = ticks[-1]
        changed = any(t.context_changed for t in ticks)
        return Tick(last.window, last.evaluation, last.context, changed, last.dead, restarted)

    def _handle_pids(self) -> list[str]:
        restarted = []
        while True:
            try:
                fqn, old, new = self._pids.get_nowait()
            except queue.Empty:
                return restarted
            if old is not None:
                restarted.append(fqn)
                self.timeline.event(self.now(), "restart", node=fqn, old_pid=old, pid=new)
            # A node back during a trial gets the last good configuration: the trial has failed (crashed).
            during_trial = self.trial is not None and old is not None
            problems = self.applier.node_restarted(
                fqn, new, (self.last_good or self.applier.initial) if during_trial else None
            )
            for problem in problems:
                self.note(f"after {fqn} (pid {new}) came up: {problem}")
            if old is not None:
                mine = {
                    k: v
                    for k, v in self.applier.current.items()
                    if self.spec.fqn(self.spec.knob(k).node or "") == fqn
                }
                if during_trial:
                    mine = {
                        k: v
                        for k, v in self.safe(self.last_good or self.applier.initial).items()
                        if k in mine
                    }
                self.timeline.event(
                    self.now(), "reapplied", node=fqn, pid=new, config=mine, problems=problems
                )

    # -- configurations -----------------------------------------------------------------------------------
    def safe(self, config: dict[str, Any]) -> dict[str, Any]:
        """A configuration with every essential node's CPU quota at or above its floor."""
        out = dict(config)
        for key, v in config.items():
            knob = self.spec.knob(key)
            if knob.kind == "cpu_quota" and v is not None and knob.node:
                floor = self.spec.node_spec(self.spec.fqn(knob.node)).quota_floor
                if floor is not None and v < floor:
                    out[key] = floor
        return out

    def apply(self, config: dict[str, Any], why: str) -> str | None:
        """Apply atomically; returns the error (the previous configuration stays) or None."""
        config = self.safe(config)
        try:
            self.applier.apply(config)
        except ActuationError as exc:
            self.timeline.event(self.now(), "apply_failed", why=why, error=str(exc), config=config)
            return str(exc)
        self.timeline.event(self.now(), "apply", why=why, config=dict(self.applier.current))
        return None

    def restore(self, config: dict[str, Any] | None, why: str) -> None:
        """Best effort, per actuator: what cannot be set now (a node is down) is set when the node returns."""
        config = self.safe(config or self.applier.initial)
        for a in self.applier.live:
            vals = {k: config.get(k) for k in a.knobs if k in config}
            try:
                a.apply(vals)
            except ActuationError as exc:
                log.info("restore (%s) deferred for %s: %s", why, type(a).__name__, exc)
            self.applier.current.update(vals)
        self.timeline.event(self.now(), "rollback", why=why, config=dict(self.applier.current))

    # -- the run ----------------------------------------------------------------------------------------------
    _deadline: float | None = None

    def run(self, duration: float | None = None) -> dict[str, Any]:
        """Run until stop() or `duration` s; returns the report (also written to the run folder)."""
        from tether.edge.configbot.discovery import wait_for_nodes
        from tether.edge.configbot.tuning import handle_context, tune

        self._deadline = None if duration is None else self.t0 + duration
        self._ticker_thread.start()
        if self.opt.mode is Mode.TUNE:
            threading.Thread(target=warm_up_sampler, args=(self.opt.sampler,), daemon=True).start()
        try:
            for m in self.applier.start():
                self.note(m)
            wait_for_nodes(self)
            problems = self.applier.validate()
            if problems:
                raise SpecRuntimeError("; ".join(problems))
            self.applier.remember_initial()
            if self.stopping:
                return self.finish()
            end = time.monotonic() + self.spec.monitor.startup_s
            while time.monotonic() < end and not self.stopping:
                self.tick()
            self.state = State.MONITORING
            if self.opt.mode is Mode.STATIC:
                err = self.apply(self.opt.static_config, "static")
                if err:
                    self.note(f"the static configuration could not be applied: {err}")
            elif self.opt.mode is Mode.TUNE:
                ctx = self.tracker.current
                if (
                    ctx is not None
                    and self.library_lookup
                    and self.library
                    and self.library.lookup(ctx.fingerprint)
                ):
                    handle_context(self, ctx, "start")
                else:
                    handle_context(self, tune(self, "start"), "context change during tuning")
            self.monitor()
        except SpecRuntimeError as exc:
            self.error = str(exc)
            self.state = State.ERROR
            self.timeline.event(self.now(), "error", error=str(exc))
            log.error("%s", exc)
        return self.finish()

    def monitor(self) -> None:
        from tether.edge.configbot.tuning import handle_context, tune

        mon = self.spec.monitor
        self.state = State.MONITORING
        while not self.stopping:
            tick = self.tick()
            if self.opt.mode is not Mode.TUNE:
                continue
            if tick.context_changed and tick.context is not None:
                handle_context(self, tick.context, "context change")
                continue
            recent = self.timeline.windows[-int(mon.window_s) :]
            bad = sum(not w.core_ok for w in recent) / max(len(recent), 1)
            fp = tick.context.fingerprint if tick.context else ""
            backoff = self._backoff.get(fp, self.opt.retune_backoff_s)
            waited = time.monotonic() - self._tuned_at.get(fp, -math.inf) > backoff
            if len(recent) >= int(mon.window_s) and bad > mon.max_violation_fraction and waited:
                self.timeline.event(self.now(), "violation", fraction=round(bad, 3), context=fp)
                handle_context(self, tune(self, "violation"), "context change during tuning")

    def finish(self) -> dict[str, Any]:
        if self.state is not State.ERROR:
            self.state = State.STOPPED
        self._ticker_stop.set()
        if self._ticker_thread.is_alive():
            self._ticker_thread.join(timeout=5)
        try:
            self.applier.close()
        finally:
            self.profiler.close()
            if self.library is not None:
                self.library.close()
            self.timeline.close()
        report = self.report()
        (self.run_dir / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
        try:
            if self.opt.plot:
                self.timeline.plot(self.run_dir / "timeline.png")
        except Exception as exc:  # the report matters more than its picture
            log.warning("timeline plot failed: %s", exc)
        return report

    def report(self) -> dict[str, Any]:
        return {
            "spec": self.spec.name,
            "mode": self.opt.mode.value,
            "state": self.state.value,
            "error": self.error,
            "duration_s": round(self.now(), 1),
            "summary": self.timeline.summary(),
            "best": self.best,
            "infeasible": self.infeasible,
            "messages": self.messages,
            "trials": self.history,
            "events": [e for e in self.timeline.events if e["kind"] not in ("apply", "trial_start")],
            "run_dir": str(self.run_dir),
            "timeline_png": str(self.run_dir / "timeline.png"),
            "optuna_storage": self.storage,
        }
