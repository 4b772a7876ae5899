"""Constrained Bayesian optimisation of the knobs with Optuna: ask a configuration, apply and measure it, tell.

ConfigBot's tuner (arXiv 2501.10513) with the paper's feasibility pitfall fixed: the first trial
is the configuration most likely to be feasible (core nodes' resources at their maximum, the
rest at their minimum), so the optimiser stands on a feasible point from the start. The sampler
is Optuna's GPSampler with constraints (feasibility-weighted expected improvement: Optuna 5
takes them per trial with `Trial.set_constraint`, Optuna 4 through the sampler's
`constraints_func`, deprecated in 5; both are handled); it needs torch and scipy, which a robot may lack (the edge extra installs neither), so without
them the tuner says so and uses TPESampler with the same constraints. The study lives in SQLite
(`<artefacts>/configbot/studies.db`), so `optuna-dashboard sqlite:///...` shows it live.
"""

from __future__ import annotations

import importlib.util
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, Trial, TrialState

from tether.edge.configbot.evaluate import Evaluation
from tether.edge.configbot.spec import Knob, Spec

__all__ = [
    "BestConfig",
    "Tuner",
    "distribution",
    "gp_available",
    "probe_config",
    "storage_url",
    "warm_up_sampler",
]

log = logging.getLogger("tether.configbot.tuner")

SamplerName = Literal["gp", "tpe", "random"]


def gp_available() -> bool:
    """GPSampler's dependencies (torch, scipy) are importable."""
    return all(importlib.util.find_spec(m) is not None for m in ("torch", "scipy"))


def storage_url(path: Path) -> str:
    return f"sqlite:///{path}"


def distribution(knob: Knob) -> BaseDistribution:
    if knob.choices is not None:
        return CategoricalDistribution(list(knob.choices))
    lo, hi = float(knob.min), float(knob.max)  # type: ignore[arg-type]
    if knob.type == "int":
        return IntDistribution(int(lo), int(hi), log=knob.log, step=1 if knob.log else int(knob.step or 1))
    if knob.log:
        return FloatDistribution(lo, hi, log=True)
    return FloatDistribution(lo, hi, step=knob.step)


def probe_config(spec: Spec, keys: list[str]) -> dict[str, Any]:
    """The configuration most likely to be feasible: core nodes at their maximum, the rest at their minimum."""
    out = {}
    for key in keys:
        knob = spec.knob(key)
        core = knob.node is not None and spec.is_core_node(spec.fqn(knob.node))
        out[key] = knob.preferred(core)
    return out


# Optuna >= 5 takes constraints per trial; 4.x only through the sampler's constraints_func.
_PER_TRIAL_CONSTRAINTS = hasattr(Trial, "set_constraint")


def _constraints(trial: FrozenTrial) -> list[float]:
    return list(trial.user_attrs.get("constraints", [1.0]))


@dataclass
class BestConfig:
    config: dict[str, Any]
    objective: float
    trial: int  # the trial's number in its study
    feasible: bool


class Tuner:
    """One Optuna study over the available knobs (ask-and-tell). Not thread-safe: one owner thread."""

    def __init__(
        self,
        spec: Spec,
        keys: list[str],
        *,
        storage: str,
        study_name: str,
        sampler: SamplerName = "gp",
        seed: int | None = None,
        startup_trials: int | None = None,
    ) -> None:
        self.spec = spec
        self.keys = list(keys)
        self.dists = {k: distribution(spec.knob(k)) for k in self.keys}
        n_startup = startup_trials if startup_trials is not None else spec.trial.startup_trials
        seed = spec.trial.seed if seed is None else seed
        if sampler == "gp" and not gp_available():
            log.warning("GPSampler needs torch and scipy, which are not installed: using TPESampler")
            sampler = "tpe"
        self.sampler_name = sampler
        cf = {} if _PER_TRIAL_CONSTRAINTS else {"constraints_func": _constraints}
        if sampler == "gp":
            s: optuna.samplers.BaseSampler = optuna.samplers.GPSampler(
                seed=seed, n_startup_trials=n_startup, **cf
            )
        elif sampler == "tpe":
            s = optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup, multivariate=True, **cf)
        else:
            s = optuna.samplers.RandomSampler(seed=seed)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        direction = spec.objective.direction if spec.objective is not None else "maximize"
        self.storage = storage
        self.study = optuna.create_study(
            storage=storage, study_name=study_name, sampler=s, direction=direction, load_if_exists=True
        )
        self.study.set_user_attr("spec", spec.name)
        self.study.set_user_attr("knobs", self.keys)
        self.study.set_user_attr("sampler", sampler)
        self.unconfirmed: set[int] = set()  # feasible trials that did not hold when re-measured
        self.direction = direction

    # -- ask and tell --------------------------------------------------------------------------------
    def _clip(self, key: str, value: Any) -> Any:
        d = self.dists[key]
        if isinstance(d, CategoricalDistribution):
            return value if value in d.choices else d.choices[0]
        if value is None:
            return d.high  # "unlimited" reads as the knob's most generous bound
        v = min(max(float(value), d.low), d.high)
        return int(round(v)) if isinstance(d, IntDistribution) else v

    def enqueue(self, config: dict[str, Any], reason: str) -> None:
        """The next ask() returns this configuration (clipped to the knobs' bounds)."""
        params = {k: self._clip(k, config.get(k)) for k in self.keys}
        self.study.enqueue_trial(params, user_attrs={"reason": reason}, skip_if_exists=False)

    def ask(self) -> tuple[Trial, dict[str, Any]]:
        trial = self.study.ask(self.dists)
        if "reason" not in trial.user_attrs:
            trial.set_user_attr("reason", "sampler")
        return trial, dict(trial.params)

    def objective_of(self, ev: Evaluation) -> float | None:
        """The value told to Optuna: the spec's objective, or (no objective) the worst constraint's slack."""
        if self.spec.objective is None:
            return -max(ev.violations)
        return ev.objective

    def tell(self, trial: Trial, ev: Evaluation | None, **attrs: Any) -> TrialState:
        """Record a trial's result: COMPLETE with its constraints, or FAIL (ev None or no objective)."""
        for k, v in attrs.items():
            trial.set_user_attr(k, v)
        value = None if ev is None else self.objective_of(ev)
        if ev is None or value is None or not math.isfinite(value):
            self.study.tell(trial, state=TrialState.FAIL)
            return TrialState.FAIL
        trial.set_user_attr("constraints", [float(v) for v in ev.violations])
        if _PER_TRIAL_CONSTRAINTS:
            for i, v in enumerate(ev.violations):
                trial.set_constraint(f"c{i}", float(v))
        trial.set_user_attr("values", {k: v for k, v in ev.values.items()})
        trial.set_user_attr("feasible", ev.feasible)
        self.study.tell(trial, value)
        return TrialState.COMPLETE

    def add_prior(self, study_name: str) -> int:
        """Copy the completed trials of an earlier study (same storage and knobs) in as the sampler's prior: the
        warm start when a context returns whose stored configuration no longer holds. They are never the
        'best' (measured in another moment); returns how many were copied."""
        try:
            old = optuna.load_study(study_name=study_name, storage=self.storage)
        except KeyError:
            return 0
        n = 0
        for t in old.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if set(t.params) != set(self.keys) or t.value is None:
                continue
            try:
                prior = optuna.trial.create_trial(
                    params=dict(t.params),
                    distributions=self.dists,
                    value=t.value,
                    user_attrs={**t.user_attrs, "prior": study_name},
                    system_attrs=dict(t.system_attrs),  # the constraints travel here
                )
                self.study.add_trial(prior)
                n += 1
            except ValueError:  # a value outside today's bounds
                continue
        return n

    # -- results -------------------------------------------------------------------------------------
    def completed(self) -> list[FrozenTrial]:
        """This tuning's completed trials (not the prior copied in)."""
        return [
            t
            for t in self.study.get_trials(deepcopy=False)
            if t.state == TrialState.COMPLETE and "prior" not in t.user_attrs
        ]

    def reject(self, number: int) -> None:
        """Trial `number` did not hold when re-measured: never the best again (kept in the study's attributes)."""
        self.unconfirmed.add(number)
        self.study.set_user_attr("unconfirmed", sorted(self.unconfirmed))

    def safest(self) -> BestConfig | None:
        """The feasible trial, not rejected, with the most headroom in its worst constraint."""
        feas = [
            t for t in self.completed() if t.user_attrs.get("feasible") and t.number not in self.unconfirmed
        ]
        if not feas:
            return None
        pick = min(feas, key=lambda t: max(_constraints(t)))
        return BestConfig(dict(pick.params), float(pick.value), pick.number, True)

    def best(self, feasible_only: bool = True) -> BestConfig | None:
        """The best completed trial (feasible ones not rejected first; with none, the least violating when
        allowed)."""
        done = self.completed()
        feas = [t for t in done if t.user_attrs.get("feasible") and t.number not in self.unconfirmed]
        if feas:
            pick = max(feas, key=lambda t: t.value if self.direction == "maximize" else -t.value)
            return BestConfig(dict(pick.params), float(pick.value), pick.number, True)
        if feasible_only or not done:
            return None
        pick = min(done, key=lambda t: max(_constraints(t)))
        return BestConfig(dict(pick.params), float(pick.value), pick.number, False)

    def better(self, a: float, b: float | None, margin: float) -> bool:
        """a improves on b by more than `margin` (relative) in the study's direction."""
        if b is None:
            return True
        scale = max(abs(b), 1e-9)
        return (a - b) / scale > margin if self.direction == "maximize" else (b - a) / scale > margin


def warm_up_sampler(sampler: str) -> None:
    """Import the GP's torch and scipy ahead of the first GP trial (seconds on a busy robot), off the loop.

    The acquisition optimiser comes too: it runs its L-BFGS-B restarts as one batch with greenlet (the
    edge extra installs it) and one by one without (Optuna then warns, and an ask took 0.2-0.3 s of CPU
    instead of 0.08-0.15 s with 6 knobs and 5-14 trials on this project's 2-core machine).
    """
    if sampler == "gp" and gp_available():
        try:
            import optuna._gp.batched_lbfgsb  # noqa: F401
            import optuna._gp.gp  # noqa: F401
        except Exception:  # the tuner reports a missing GP itself
            pass
