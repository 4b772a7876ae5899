"""Server-side optimizers on flat parameter vectors: delayed Nesterov (arXiv 2401.09135, used by HALoS
arXiv 2506.04531 at every parameter server), DiLoCo's outer Nesterov SGD, and the workers' schedule.

A pseudo-gradient is `theta_start - theta_end` of some local training, so it points uphill like a
gradient and a server *subtracts* it. All tensors here are flat float32 vectors of shape (P,).
"""

from __future__ import annotations

import math

import torch

from tether.cloud.halos.config import DelayedNesterovConfig, WorkerOptimConfig

__all__ = ["DelayedNesterov", "NesterovSGD", "cosine_lr"]


class DelayedNesterov:
    """Delayed Nesterov: apply each pseudo-gradient at once, fold momentum in every N of them.

    Per incoming g (t counts updates from 1):
        buffer += g
        if t % N == 0:  m <- beta m + buffer / N;  theta <- theta - eta (beta m + g / N);  buffer <- 0
        else:           theta <- theta - eta g / N
    with eta = lr * N (`DelayedNesterovConfig.lr` is the per-update step size, the reference's
    "lr 0.2 x 16"). With N = 1 it is Nesterov momentum SGD.
    """

    def __init__(self, n_params: int, cfg: DelayedNesterovConfig, device: str | torch.device = "cpu") -> None:
        self.cfg = cfg
        self.momentum = torch.zeros(n_params, device=device)  # m, (P,)
        self.buffer = torch.zeros(
            n_params, device=device
        )  # sum of the pseudo-gradients since the last momentum step
        self.updates = 0  # t

    def step(self, theta: torch.Tensor, g: torch.Tensor) -> None:
        """Update `theta` (P,) in place with pseudo-gradient `g` (P,)."""
        n, beta = self.cfg.buffer, self.cfg.momentum
        eta = self.cfg.lr * n
        self.updates += 1
        self.buffer.add_(g)
        if self.updates % n == 0:
            self.momentum.mul_(beta).add_(self.buffer, alpha=1.0 / n)
            theta.sub_(eta * beta * self.momentum + (eta / n) * g)
            self.buffer.zero_()
        else:
            theta.sub_(g, alpha=eta / n)


class NesterovSGD:
    """torch.optim.SGD(nesterov=True) on a flat vector: DiLoCo's outer optimizer."""

    def __init__(self, n_params: int, lr: float, momentum: float, device: str | torch.device = "cpu") -> None:
        self.lr, self.beta = lr, momentum
        self.velocity = torch.zeros(n_params, device=device)  # (P,)
        self.started = False

    def step(self, theta: torch.Tensor, g: torch.Tensor) -> None:
        """Update `theta` in place with the averaged pseudo-gradient `g`."""
        if self.started:
            self.velocity.mul_(self.beta).add_(g)
        else:  # torch initialises the buffer with the first gradient
            self.velocity.copy_(g)
            self.started = True
        theta.sub_(g + self.beta * self.velocity, alpha=self.lr)


def cosine_lr(cfg: WorkerOptimConfig, global_step: float) -> float:
    """Learning rate at a global step: linear warmup to cfg.lr, cosine decay to min_lr_ratio * lr."""
    peak, floor = cfg.lr, cfg.lr * cfg.min_lr_ratio
    if global_step < cfg.warmup_steps:
        return peak * (global_step + 1) / cfg.warmup_steps
    if global_step >= cfg.total_steps:
        return floor
    p = (global_step - cfg.warmup_steps) / (cfg.total_steps - cfg.warmup_steps)
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * p))
