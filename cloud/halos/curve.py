"""Validation loss against simulated wall-clock time, as HALoS (arXiv 2506.04531 Fig. 4) reports it,
and the recorder every method uses to fill it at the same cadence (tokens or simulated seconds).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from tether.cloud.halos.config import RunConfig
from tether.cloud.halos.workload import LMTask

__all__ = ["Curve", "Recorder"]


@dataclass
class Curve:
    """One run's validation curve; `steps` in global steps (tokens / global batch)."""

    method: str
    seed: int
    times: list[float] = field(default_factory=list)  # simulated seconds
    steps: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)  # nats per byte
    stats: dict[str, float] = field(default_factory=dict)
    real_seconds: float = 0.0  # wall-clock time the run took on this machine
    cpu_seconds: float = 0.0  # CPU time of the run's process (its wall time on an idle core)

    @property
    def final_loss(self) -> float:
        return self.val_loss[-1]

    @property
    def final_time(self) -> float:
        return self.times[-1]

    def time_to_target(self, target: float) -> float:
        """First simulated time the validation loss reaches `target`, interpolated linearly between
        evaluations; inf when it never does."""
        return self._first_reach(target, self.times)

    def steps_to_target(self, target: float) -> float:
        """Global steps of tokens consumed when the validation loss first reaches `target`; inf if never."""
        return self._first_reach(target, self.steps)

    def _first_reach(self, target: float, xs: list[float]) -> float:
        for k, loss in enumerate(self.val_loss):
            if loss <= target:
                if k == 0:
                    return xs[0]
                x0, x1, l0 = xs[k - 1], xs[k], self.val_loss[k - 1]
                return x0 + (x1 - x0) * (l0 - target) / (l0 - loss)
        return math.inf


class Recorder:
    """Fills a curve at the run's cadence (tokens or simulated seconds) and says when the run is over."""

    def __init__(self, curve: Curve, task: LMTask, run: RunConfig, n_workers: int) -> None:
        self.curve = curve
        self.task = task
        self.budget_local = run.budget_steps * n_workers  # local steps in the token budget
        self.every_local = run.eval_every * n_workers
        self.cap = math.inf if run.time_cap_s is None else run.time_cap_s
        self.every_s = run.eval_every_s
        self.n_workers = n_workers
        self._next = 0  # local steps at which the next point is due (token cadence)
        self._next_t = 0.0  # simulated time at which the next point is due (time cadence)

    def next_due_time(self) -> float | None:
        """When the next point is due on the time cadence (None on the token cadence)."""
        return None if self.every_s is None else self._next_t

    def observe(self, now: float, local_steps: int, theta: torch.Tensor | Callable[[], torch.Tensor]) -> bool:
        """Record a point if one is due (and always at the end); True once the run is over.

        `theta` may be a callable, so a caller pays for flattening its model only when a point is due.
        """
        done = local_steps >= self.budget_local or now >= self.cap
        due = local_steps >= self._next if self.every_s is None else now >= self._next_t
        if due or done:
            self._record(now, local_steps, theta)
        return done

    def finish_at_cap(self, local_steps: int, theta: torch.Tensor | Callable[[], torch.Tensor]) -> None:
        """The next event would pass the cap: the last point is the model of record as it stands at the cap."""
        if not self.curve.times or self.curve.times[-1] < self.cap:
            self._record(self.cap, local_steps, theta)

    def _record(self, now: float, local_steps: int, theta: torch.Tensor | Callable[[], torch.Tensor]) -> None:
        self.curve.times.append(now)
        self.curve.steps.append(local_steps / self.n_workers)
        self.curve.val_loss.append(self.task.evaluate(theta() if callable(theta) else theta))
        self._next = (local_steps // self.every_local + 1) * self.every_local
        if self.every_s is not None:
            self._next_t = (math.floor(now / self.every_s + 1e-9) + 1) * self.every_s
