"""A HALoS worker (arXiv 2506.04531 Sec. 4): from the model it is handed, run H_i AdamW steps on its own
data and return the pseudo-gradient theta_start - theta_end. The simulator and the Ray actors both use it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from tether.cloud.halos.config import WorkerOptimConfig
from tether.cloud.halos.model import get_flat, set_flat
from tether.cloud.halos.optim import cosine_lr
from tether.cloud.halos.workload import LMTask

__all__ = ["Worker", "WorkerResult"]


@dataclass
class WorkerResult:
    """What a worker sends back after one task."""

    worker_id: int
    pseudo_grad: torch.Tensor  # theta_start - theta_end, (P,)
    steps: int  # local steps taken
    loss: float  # mean training loss over those steps (nats)


class Worker:
    """One worker: its own model replica, AdamW state (kept across tasks, as the reference) and data stream."""

    def __init__(
        self, worker_id: int, task: LMTask, optim: WorkerOptimConfig, seed: int, incarnation: int = 0
    ):
        self.worker_id = worker_id
        self.task = task
        self.optim_cfg = optim
        self.model = task.new_model(seed)
        self.opt = torch.optim.AdamW(
            self.model.decay_groups(optim.weight_decay),
            lr=optim.lr,
            betas=(optim.beta1, optim.beta2),
            eps=optim.eps,
            foreach=True,
        )
        # each worker reads its own stream; a replacement (incarnation > 0) reads a fresh one
        self.rng = np.random.default_rng([seed, worker_id, incarnation])
        self.steps_done = 0

    def run(self, theta: torch.Tensor, start_step: float, n_steps: int) -> WorkerResult:
        """`n_steps` local steps from `theta` (P,); step j uses the learning rate of global step start_step + j."""
        set_flat(self.model, theta)
        self.model.train()
        losses = 0.0
        for j in range(n_steps):
            lr = cosine_lr(self.optim_cfg, start_step + j)
            for group in self.opt.param_groups:
                group["lr"] = lr
            x, y = self.task.batch(self.rng)
            loss = self.model(x, y)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            if self.optim_cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.optim_cfg.grad_clip)
            self.opt.step()
            losses += loss.item()
        self.steps_done += n_steps
        return WorkerResult(self.worker_id, theta - get_flat(self.model), n_steps, losses / max(1, n_steps))
