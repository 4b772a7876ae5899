"""Scoring a measurement against the specification: constraint violations and the objective.

A violation is normalised by its threshold, so Optuna's constraints (feasible when <= 0) are on
one scale whatever the units: for `min`, (min - value) / |min|; for `max`, (value - max) / |max|.
A signal with no sample in the window counts as broken (violation 1.0 for a rate, the node is
silent); the objective is then unknown (None).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from tether.edge.configbot.spec import Constraint, Spec

__all__ = ["Evaluation", "evaluate", "violation"]

MISSING_VIOLATION = 1.0


def violation(c: Constraint, value: float | None, margin: float = 0.0) -> float:
    """<= 0 when the constraint holds (with `margin`: that fraction inside its bounds); the worse bound otherwise."""
    if value is None or not math.isfinite(value):
        return MISSING_VIOLATION
    v = -math.inf
    if c.min is not None:
        scale = max(abs(c.min), 1e-9)
        v = max(v, (c.min + margin * scale - value) / scale)
    if c.max is not None:
        scale = max(abs(c.max), 1e-9)
        v = max(v, (value - c.max + margin * scale) / scale)
    return v


@dataclass
class Evaluation:
    """One window's verdict. `violations[i]` belongs to `spec.constraints[i]`."""

    values: dict[str, float | None]
    violations: list[float]
    core: list[bool]
    objective: float | None
    missing: list[str] = field(default_factory=list)

    @property
    def feasible(self) -> bool:
        return all(v <= 0 for v in self.violations)

    @property
    def core_ok(self) -> bool:
        return all(v <= 0 for v, c in zip(self.violations, self.core) if c)

    def worst_core_ratio(self, spec: Spec) -> float:
        """The smallest value / min over the core rate minimums (1.0 = at threshold): how badly rates broke."""
        worst = math.inf
        for c, is_core in zip(spec.constraints, self.core):
            if is_core and c.min is not None and c.min > 0:
                value = self.values.get(c.signal(spec.namespace).key)
                worst = min(worst, 0.0 if value is None else value / c.min)
        return worst

    def to_dict(self) -> dict:
        return {
            "values": self.values,
            "violations": self.violations,
            "objective": self.objective,
            "feasible": self.feasible,
            "core_ok": self.core_ok,
        }


def evaluate(spec: Spec, values: dict[str, float | None], margin: float = 0.0) -> Evaluation:
    """Score measured signal values (keyed by Signal.key) against the specification.

    `margin` tightens every bound by that fraction of it: trials are judged with the spec's trial
    margin, so the configuration chosen holds with headroom rather than on the edge of its noise."""
    viols, core, missing = [], [], []
    for c in spec.constraints:
        key = c.signal(spec.namespace).key
        value = values.get(key)
        if value is None:
            missing.append(key)
        viols.append(violation(c, value, margin))
        core.append(c.core)
    objective = None
    if spec.objective is not None:
        terms = spec.objective.terms(spec.namespace)
        vals = [values.get(s.key) for s, _ in terms]
        if all(v is not None and math.isfinite(v) for v in vals):
            if spec.objective.max_min_rate is not None:
                objective = min(v / w for v, (_, w) in zip(vals, terms))  # type: ignore[operator]
            else:
                objective = float(vals[0])  # type: ignore[arg-type]
        else:
            missing += [s.key for (s, _), v in zip(terms, vals) if v is None]
    return Evaluation(dict(values), viols, core, objective, missing)
