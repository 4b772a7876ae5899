"""Validation loss against simulated wall-clock time, as HALoS (arXiv 2506.04531 Fig. 4) reports it,
and the recorder every method uses to fill it at the same token cadence.
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
        for k, loss in enumerate(self.val_loss):
            if loss <= target:
                if k == 0:
                    return self.times[0]
                t0, t1, l0 = self.times[k - 1], self.times[k], self.val_loss[k - 1]
                return t0 + (t1 - t0) * (l0 - target) / (l0 - loss)
        return math.inf


class Recorder:
    """Evaluates the model of record every `eval_every` global steps of tokens and says when the budget is spent."""

    def __init__(self, curve: Curve, task: LMTask, run: RunConfig, n_workers: int) -> None:
        self.curve = curve
        self.task = task
        self.budget_local = run.budget_steps * n_workers  # local steps in the token budget
        self.every_local = run.eval_every * n_workers
        self.n_workers = n_workers
        self._next = 0

    def observe(self, now: float, local_steps: int, theta: torch.Tensor | Callable[[], torch.Tensor]) -> bool:
        """Record a point if a threshold was crossed (and always at the end); True once the budget is spent.

        `theta` may be a callable, so a caller pays for flattening its model only when a point is due.
        """
        done = local_steps >= self.budget_local
        if local_steps >= self._next or done:
            self.curve.times.append(now)
            self.curve.steps.append(local_steps / self.n_workers)
            self.curve.val_loss.append(self.task.evaluate(theta() if callable(theta) else theta))
            self._next = (local_steps // self.every_local + 1) * self.every_local
        return done
