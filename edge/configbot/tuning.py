"""One tuning of ConfigBot: trials (apply, settle, measure) asked of Optuna until it converges, safely.

A trial applies a configuration atomically, waits `settle_s`, measures `measure_s`, and tells
Optuna the objective with each constraint's violation. A trial counts as feasible only with
`margin` headroom inside every bound, so the optimum chosen, which sits on a constraint's edge,
does not fall off it with the next second's noise. Safety, as ConfigBot's specification asks:
the first trial is the configuration most likely to be feasible; a trial that breaks a core
rate badly (below `abort_ratio` of its minimum for two seconds) is cut short, told as measured
(infeasible) and the last good configuration is restored at once; a node that dies or
restarts mid-trial fails the trial and the last good configuration is restored (re-applied to
the node when it returns). Tuning stops after `max_trials`, or `patience` trials without a
better feasible one. The best is then re-measured before ConfigBot converges on it (`confirm`):
the best of a few short trials is the one whose noise flattered it most, so one that no longer
holds gives way to the next best. When no trial was feasible (or none held when re-measured),
the specification is reported infeasible with the least-violating configuration found, which is
then applied.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from tether.edge.configbot.context import Context
from tether.edge.configbot.evaluate import Evaluation, evaluate
from tether.edge.configbot.tuner import BestConfig, Tuner, probe_config

if TYPE_CHECKING:
    from tether.edge.configbot.bot import ConfigBot

__all__ = ["handle_context", "run_trial", "tune"]


def run_trial(
    bot: ConfigBot, number: int, config: dict[str, Any], margin: float | None = None
) -> tuple[Evaluation | None, str]:
    """Settle and measure the applied configuration, judged with `margin` (default: the trial margin);
    (evaluation or None, outcome: ok/aborted/crashed/context/stopped)."""
    bot.timeline.event(bot.now(), "trial_start", trial=number, config=config)
    margin = bot.spec.trial.margin if margin is None else margin
    ev, outcome = _settle_and_measure(bot, number, margin)
    summary = {
        "trial": number,
        "t": round(bot.now(), 1),
        "config": config,
        "outcome": outcome,
        "objective": None if ev is None else ev.objective,
        "feasible": None if ev is None else ev.feasible,
        "violations": None if ev is None else [round(v, 4) for v in ev.violations],
        "values": None if ev is None else ev.values,
    }
    with bot._lock:
        bot.history.append(summary)
    bot.timeline.event(bot.now(), "trial_end", **{k: v for k, v in summary.items() if k != "t"})
    return ev, outcome


def _settle_and_measure(bot: ConfigBot, number: int, margin: float) -> tuple[Evaluation | None, str]:
    """Wait `settle_s`, measure `measure_s` (judged with `margin`), watching for crashes, a new context and a
    core rate breaking badly; (evaluation or None, outcome)."""
    spec = bot.spec
    bot.trial = number
    alive_at_start = {f for f in bot.profiler.nodes if bot.profiler.alive(f, spec.monitor.node_timeout_s)}
    outcome = "ok"
    start = time.monotonic()
    t_measure = start + spec.trial.settle_s
    t_end = t_measure + spec.trial.measure_s
    bad_streak = 0
    while time.monotonic() < t_end - 0.05:
        if bot.stopping:
            outcome = "stopped"
            break
        tick = bot.tick()
        if tick.restarted or set(tick.dead) & alive_at_start:
            outcome = "crashed"
            bot.timeline.event(
                bot.now(), "crash", trial=number, nodes=sorted(set(tick.restarted) | set(tick.dead))
            )
            break
        if tick.context_changed:
            outcome = "context"
            break
        if time.monotonic() >= t_measure:  # a core rate far below its minimum, twice in a row: stop now
            bad_streak = (
                bad_streak + 1 if tick.evaluation.worst_core_ratio(spec) < spec.trial.abort_ratio else 0
            )
            if bad_streak >= 2:
                outcome = "aborted"
                break
    ev: Evaluation | None = None
    if outcome in ("ok", "aborted"):
        t1 = time.monotonic()
        ev = evaluate(spec, bot.profiler.measure(max(t_measure, start), t1), margin=margin)
    bot.trial = None
    return ev, outcome


def _confirmed_best(bot: ConfigBot, tuner: Tuner) -> tuple[BestConfig | None, str]:
    """The best trial re-measured before converging on it: the best of a few short, noisy trials is the one
    whose noise flattered it most. Each re-measurement is judged with half the trial margin; one that fails
    is rejected and the next best is re-measured, up to `confirm` times, after which the remaining feasible
    trial with the most headroom is taken unconfirmed. Returns (best or None, how: confirmed / unconfirmed /
    unchecked (`confirm` 0) / none / stopped / context); a confirmed or unconfirmed best is left applied (with
    none, the caller applies the least-violating configuration)."""
    from tether.edge.configbot.bot import State

    spec = bot.spec
    if spec.trial.confirm == 0:
        return tuner.best(), "unchecked"
    for _ in range(spec.trial.confirm):
        best = tuner.best()
        if best is None:
            return None, "none"
        config = bot.safe(best.config)
        err = bot.apply(config, f"confirm trial {best.trial}")
        if err is not None:
            tuner.reject(best.trial)
            bot.note(f"trial {best.trial}'s configuration could not be re-applied: {err}")
            continue
        bot.state = State.VERIFYING
        ev, outcome = _settle_and_measure(bot, best.trial, spec.trial.margin / 2)
        bot.state = State.TUNING
        held = ev is not None and outcome == "ok" and ev.feasible
        bot.timeline.event(
            bot.now(),
            "confirm",
            trial=best.trial,
            outcome=outcome,
            held=held,
            values=None if ev is None else ev.values,
            objective=None if ev is None else ev.objective,
            config=config,
        )
        if outcome in ("stopped", "context"):
            return best, outcome
        if held:
            return best, "confirmed"
        tuner.reject(best.trial)
        if outcome == "crashed":
            bot.restore(bot.last_good, f"node crashed while trial {best.trial} was re-measured")
            _wait_for_nodes_back(bot, 10 * spec.monitor.node_timeout_s)
    best = tuner.safest()
    if best is None:
        return None, "none"
    bot.apply(best.config, f"unconfirmed: trial {best.trial}, the most headroom left")
    return best, "unconfirmed"


def _wait_for_nodes_back(bot: ConfigBot, limit_s: float) -> None:
    """After a crash, give the launcher time to respawn the node before the next trial."""
    end = time.monotonic() + limit_s
    while time.monotonic() < end and not bot.stopping:
        tick = bot.tick()
        if not tick.dead:
            return


def tune(
    bot: ConfigBot, reason: str, warm: dict[str, Any] | None = None, prior: str | None = None
) -> Context | None:
    """Tune in the current context (see the module docstring); leaves the chosen configuration applied.
    Returns the new context when one cut the tuning short (the caller handles it: no recursion)."""
    from tether.edge.configbot.bot import State

    spec = bot.spec
    keys = bot.applier.knob_keys()
    ctx = bot.tracker.current
    fp = ctx.fingerprint if ctx is not None else "default"
    if not keys:
        bot.note("no knob can be turned (none in the spec, or their actuators are off): monitoring only")
        return None
    bot.tunings += 1
    bot.state = State.TUNING
    started = time.monotonic()
    name = f"{spec.name}|{fp}|{bot.opt.run_id}|{bot.tunings}"
    tuner = Tuner(spec, keys, storage=bot.storage, study_name=name, sampler=bot.opt.sampler)  # type: ignore[arg-type]
    copied = tuner.add_prior(prior) if prior else 0
    bot.timeline.event(
        bot.now(), "tuning", reason=reason, context=fp, study=name, sampler=tuner.sampler_name, prior=copied
    )
    tuner.enqueue(probe_config(spec, keys), "probe: most likely feasible")
    for config, why in ((warm, "library"), (bot.applier.initial, "defaults")):
        if config:
            tuner.enqueue({k: config.get(k) for k in keys}, why)
    best_value: float | None = None
    since_better = 0
    n = 0
    context_moved = False
    for n in range(1, spec.trial.max_trials + 1):
        if bot.stopping:
            break
        trial, params = tuner.ask()
        config = bot.safe(params)
        err = bot.apply(config, f"trial {trial.number}")
        if err is not None:
            tuner.tell(trial, None, failure=err, config=config)
            bot.note(f"trial {trial.number} could not be applied: {err}")
            continue
        ev, outcome = run_trial(bot, trial.number, config)
        if outcome == "stopped":
            tuner.tell(trial, None, outcome=outcome, config=config)
            break
        if outcome == "context":
            tuner.tell(trial, None, outcome=outcome, config=config)
            context_moved = True
            break
        if outcome == "crashed":
            tuner.tell(trial, None, outcome=outcome, config=config)
            bot.restore(bot.last_good, f"node crashed during trial {trial.number}")
            _wait_for_nodes_back(bot, 10 * spec.monitor.node_timeout_s)
            continue
        tuner.tell(trial, ev, outcome=outcome, config=config, context=fp)
        if outcome == "aborted":
            bot.restore(bot.last_good, f"trial {trial.number} broke a core constraint badly")
        assert ev is not None
        if ev.feasible:
            bot.last_good = config
            value = tuner.objective_of(ev)
            if value is not None and tuner.better(value, best_value, spec.trial.min_improvement):
                best_value, since_better = value, 0
                continue
        since_better += 1
        if n >= spec.trial.startup_trials and best_value is not None and since_better >= spec.trial.patience:
            break
    if bot.stopping or context_moved:
        best, how = tuner.best(), "stopped"
    else:
        best, how = _confirmed_best(bot, tuner)
        context_moved = how == "context"
    seconds = round(time.monotonic() - started, 1)
    if context_moved and bot.tracker.current is not None and not bot.stopping:
        # Cut short by a new context: nothing converged here, nothing is stored for the old context.
        bot.timeline.event(bot.now(), "tuning_cut", trials=n, seconds=seconds, context=fp)
        bot.restore(bot.last_good, "tuning cut short by a context change")
        bot.state = State.MONITORING
        return bot.tracker.current
    bot._tuned_at[fp] = time.monotonic()
    # An infeasible context is retried ever less often (up to 10 min), a feasible one at the base backoff.
    base = bot.opt.retune_backoff_s
    bot._backoff[fp] = base if best is not None else min(600.0, 2 * bot._backoff.get(fp, base / 2))
    if best is not None:
        if how not in ("confirmed", "unconfirmed"):  # those are applied already
            bot.apply(best.config, "best")
        bot.last_good = bot.safe(best.config)
        bot.best = {"config": bot.last_good, "objective": best.objective, "trial": best.trial, "context": fp}
        bot.infeasible = None
        bot.timeline.event(
            bot.now(),
            "converged",
            trials=n,
            seconds=seconds,
            objective=best.objective,
            trial=best.trial,
            config=bot.last_good,
            context=fp,
            reason=reason,
            confirmed=how == "confirmed",
        )
        if how == "unconfirmed":
            bot.note(
                f"no configuration held when re-measured {spec.trial.confirm} time(s); applied trial "
                f"{best.trial}'s, the feasible one with the most headroom: the monitor retunes if it breaks"
            )
        if bot.library is not None:
            bot.library.store(
                fp,
                bot.last_good,
                best.objective,
                True,
                study=name,
                trials=n,
                maximize=tuner.direction == "maximize",
            )
    elif not bot.stopping and not context_moved:
        least = tuner.best(feasible_only=False)
        config = bot.safe(least.config) if least else (bot.last_good or bot.applier.initial)
        bot.restore(config, "infeasible: the least-violating configuration")
        viol = None
        if least is not None:
            t = tuner.study.trials[least.trial]
            viol = dict(
                zip([c.label(spec.namespace) for c in spec.constraints], t.user_attrs.get("constraints", []))
            )
        bot.infeasible = {"context": fp, "trials": n, "best_found": config, "violations": viol}
        bot.timeline.event(
            bot.now(), "infeasible", trials=n, seconds=seconds, config=config, violations=viol, context=fp
        )
        remeasured = (
            f" (the {len(tuner.unconfirmed)} feasible did not hold when re-measured)"
            if tuner.unconfirmed
            else ""
        )
        bot.note(
            f"the specification is infeasible in context {fp} over {n} trials{remeasured}; applied the least-violating "
            f"configuration found: {config} (violations, <= 0 holds: {viol})"
        )
    bot.state = State.MONITORING
    return None


def _verify_stored(bot: ConfigBot, config: dict[str, Any], context: str) -> tuple[Evaluation | None, str]:
    """Measure a stored configuration, judged as a re-measured best is (half the trial margin: it was chosen
    with that). One short measurement can miss by noise alone (the monitor lets `max_violation_fraction` of
    its windows miss; a stall of the whole machine can cut a trial short), and dropping a stored
    configuration costs a whole tuning, so with `confirm` on, one that misses or is aborted is measured once
    more before it is dropped (an abort again takes at most two seconds); a crash or a new context ends it."""
    chances = 2 if bot.spec.trial.confirm else 1
    ev, outcome = None, "stopped"
    for attempt in range(1, chances + 1):
        ev, outcome = run_trial(bot, -1, bot.safe(config), margin=bot.spec.trial.margin / 2)
        held = ev is not None and ev.core_ok and outcome == "ok"
        bot.timeline.event(bot.now(), "verify", context=context, attempt=attempt, held=held, outcome=outcome)
        if held or outcome not in ("ok", "aborted"):
            break
    return ev, outcome


def handle_context(bot: ConfigBot, ctx: Context | None, reason: str) -> None:
    """A new context: its library configuration, verified (`_verify_stored`), else a fresh tuning; again for
    each context that cuts the previous one short."""
    while ctx is not None and not bot.stopping:
        ctx = _enter_context(bot, ctx, reason)
        reason = "context change during tuning"


def _enter_context(bot: ConfigBot, ctx: Context, reason: str) -> Context | None:
    from tether.edge.configbot.bot import State

    entry = bot.library.lookup(ctx.fingerprint) if bot.library is not None and bot.library_lookup else None
    if entry is None:
        return tune(bot, f"{reason}: new context {ctx.fingerprint}")
    bot.timeline.event(
        bot.now(), "library_hit", context=ctx.fingerprint, config=entry.config, objective=entry.objective
    )
    bot.state = State.VERIFYING
    err = bot.apply(entry.config, f"library: {ctx.fingerprint}")
    ev, outcome = (None, "apply_failed") if err else _verify_stored(bot, entry.config, ctx.fingerprint)
    bot.state = State.MONITORING
    if ev is not None and ev.core_ok and outcome == "ok":
        bot.library.mark_used(ctx.fingerprint)  # type: ignore[union-attr]
        bot.last_good = bot.safe(entry.config)
        bot.best = {
            "config": bot.last_good,
            "objective": ev.objective,
            "trial": None,
            "context": ctx.fingerprint,
        }
        bot._tuned_at[ctx.fingerprint] = time.monotonic()
        bot.timeline.event(
            bot.now(),
            "converged",
            trials=0,
            seconds=0.0,
            objective=ev.objective,
            trial=None,
            config=bot.last_good,
            context=ctx.fingerprint,
            reason=f"{reason}: library",
        )
        return None
    if outcome == "context":
        return bot.tracker.current
    bot.library.invalidate(ctx.fingerprint)  # type: ignore[union-attr]
    return tune(
        bot, f"{reason}: library configuration failed ({outcome})", warm=entry.config, prior=entry.study
    )
