"""Validated configuration of HALoS (arXiv 2506.04531) and its baselines: one frozen dataclass per domain.

Defaults are the reference's hyperparameters (utnslab/halos, examples/run_*.sh); every field has
bounds, and a broken rule raises `HalosConfigError` with the rule, the value and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "AsyncLocalSGDConfig",
    "DelayedNesterovConfig",
    "DiLoCoConfig",
    "HalosConfig",
    "HalosConfigError",
    "ModelConfig",
    "RunConfig",
    "SyncConfig",
    "WorkerOptimConfig",
    "WorkloadConfig",
]


class HalosConfigError(ValueError):
    """A configuration value breaks a rule; not recoverable without changing the value."""


def _bound(
    owner: str,
    name: str,
    value: float,
    lo: float | None = None,
    hi: float | None = None,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
) -> None:
    ok = True
    if lo is not None:
        ok &= value > lo if lo_open else value >= lo
    if hi is not None:
        ok &= value < hi if hi_open else value <= hi
    if not ok:
        left = "" if lo is None else f"{lo} {'<' if lo_open else '<='} "
        right = "" if hi is None else f" {'<' if hi_open else '<='} {hi}"
        raise HalosConfigError(
            f"{owner}.{name}: {left}{name}{right} must hold, but got {name}={value!r}; "
            f"pass {owner}({name}=...) with a value in range"
        )


@dataclass(frozen=True)
class DelayedNesterovConfig:
    """Delayed Nesterov (Liu et al. 2024, arXiv 2401.09135) as a parameter server's optimizer.

    `lr` is the per-update step size: each incoming pseudo-gradient g moves the model by lr * g,
    and every `buffer` updates the momentum (decay `momentum`) takes a step of lr * buffer * momentum * m.
    The reference writes this as "lr 0.2 x 16": lr=0.2, buffer=16.
    """

    lr: float
    momentum: float
    buffer: int

    def __post_init__(self) -> None:
        _bound("DelayedNesterovConfig", "lr", self.lr, 0.0, 100.0, lo_open=True)
        _bound("DelayedNesterovConfig", "momentum", self.momentum, 0.0, 1.0, hi_open=True)
        _bound("DelayedNesterovConfig", "buffer", self.buffer, 1, 4096)


@dataclass(frozen=True)
class WorkerOptimConfig:
    """Each worker's inner AdamW and its learning-rate schedule (cosine after linear warmup).

    The schedule is indexed in global steps (one global step = every worker's batch once), so
    every method follows the same learning rate against tokens seen.
    """

    lr: float = 3e-3
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    weight_decay: float = 0.1
    grad_clip: float = 1.0  # 0 disables clipping
    warmup_steps: int = 100
    total_steps: int = 2000
    min_lr_ratio: float = 0.1

    def __post_init__(self) -> None:
        o = "WorkerOptimConfig"
        _bound(o, "lr", self.lr, 0.0, 1.0, lo_open=True)
        _bound(o, "beta1", self.beta1, 0.0, 1.0, hi_open=True)
        _bound(o, "beta2", self.beta2, 0.0, 1.0, hi_open=True)
        _bound(o, "eps", self.eps, 0.0, 1.0, lo_open=True)
        _bound(o, "weight_decay", self.weight_decay, 0.0, 10.0)
        _bound(o, "grad_clip", self.grad_clip, 0.0)
        _bound(o, "warmup_steps", self.warmup_steps, 0)
        _bound(o, "total_steps", self.total_steps, 1)
        _bound(o, "min_lr_ratio", self.min_lr_ratio, 0.0, 1.0)
        if self.warmup_steps >= self.total_steps:
            raise HalosConfigError(
                f"WorkerOptimConfig: warmup_steps < total_steps must hold, but got "
                f"(warmup_steps={self.warmup_steps}, total_steps={self.total_steps}); shorten the warmup"
            )


@dataclass(frozen=True)
class ModelConfig:
    """A small GPT trained from scratch on bytes (vocab 256). Parameters ~ 12 * n_layer * d_model^2."""

    seq_len: int = 64
    d_model: int = 128
    n_layer: int = 2
    n_head: int = 4
    vocab_size: int = 256

    def __post_init__(self) -> None:
        o = "ModelConfig"
        _bound(o, "seq_len", self.seq_len, 2, 8192)
        _bound(o, "d_model", self.d_model, 8, 8192)
        _bound(o, "n_layer", self.n_layer, 1, 64)
        _bound(o, "n_head", self.n_head, 1, 128)
        _bound(o, "vocab_size", self.vocab_size, 2, 1 << 20)
        if self.d_model % self.n_head:
            raise HalosConfigError(
                f"ModelConfig: d_model % n_head == 0 must hold, but got (d_model={self.d_model}, "
                f"n_head={self.n_head}); pick n_head dividing d_model"
            )


@dataclass(frozen=True)
class WorkloadConfig:
    """The training workload: model, per-worker batch (sequences per local step), evaluation set."""

    model: ModelConfig = field(default_factory=ModelConfig)
    batch_size: int = 1
    val_windows: int = 256  # fixed held-out windows of seq_len bytes, the same for every method
    threads: int = 1  # torch intra-op threads per process
    device: str = "cpu"  # "cpu", "cuda", or "auto" (cuda when available); parameters live there

    def resolved_device(self) -> str:
        """The torch device to use: `auto` picks cuda when one is available."""
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def __post_init__(self) -> None:
        _bound("WorkloadConfig", "batch_size", self.batch_size, 1, 4096)
        _bound("WorkloadConfig", "val_windows", self.val_windows, 1, 1 << 16)
        _bound("WorkloadConfig", "threads", self.threads, 1, 256)
        if self.device not in ("cpu", "cuda", "auto") and not self.device.startswith("cuda:"):
            raise HalosConfigError(
                f"WorkloadConfig.device must be 'cpu', 'cuda[:i]' or 'auto', but got {self.device!r}"
            )


@dataclass(frozen=True)
class HalosConfig:
    """HALoS: workers -> local parameter server per region -> one global parameter server.

    H (`local_steps`): worker i runs H_i = max(1, ceil(H * s_i)) AdamW steps, s_i its speed relative
    to the fastest (when `speed_scaled`). K (`push_every`): a local server sends its accumulated
    change to the global server after K worker updates, one push in flight. alpha (`merge_alpha`):
    theta_L <- (1 - alpha) theta_L + alpha theta_G when the global model comes back.
    """

    local_steps: int = 8
    speed_scaled: bool = True
    push_every: int = 32
    merge_alpha: float = 0.25
    local_opt: DelayedNesterovConfig = field(default_factory=lambda: DelayedNesterovConfig(0.2, 0.9, 16))
    global_opt: DelayedNesterovConfig = field(default_factory=lambda: DelayedNesterovConfig(0.15, 0.5, 2))
    global_region: int = 0

    def __post_init__(self) -> None:
        _bound("HalosConfig", "local_steps", self.local_steps, 1, 100_000)
        _bound("HalosConfig", "push_every", self.push_every, 1, 1_000_000)
        _bound("HalosConfig", "merge_alpha", self.merge_alpha, 0.0, 1.0, lo_open=True)
        _bound("HalosConfig", "global_region", self.global_region, 0)


@dataclass(frozen=True)
class AsyncLocalSGDConfig:
    """Async Local-SGD (Liu et al. 2024): one parameter server for every worker, delayed Nesterov."""

    local_steps: int = 32
    speed_scaled: bool = True
    server_opt: DelayedNesterovConfig = field(default_factory=lambda: DelayedNesterovConfig(0.05, 0.9, 32))
    server_region: int = 0

    def __post_init__(self) -> None:
        _bound("AsyncLocalSGDConfig", "local_steps", self.local_steps, 1, 100_000)
        _bound("AsyncLocalSGDConfig", "server_region", self.server_region, 0)


@dataclass(frozen=True)
class DiLoCoConfig:
    """DiLoCo (Douillard et al. 2023): H local steps, all-reduce of pseudo-gradients, outer Nesterov."""

    local_steps: int = 32
    speed_scaled: bool = False  # True: the "DiLoCo with speed-scaled local steps" baseline
    outer_lr: float = 0.7
    outer_momentum: float = 0.9

    def __post_init__(self) -> None:
        _bound("DiLoCoConfig", "local_steps", self.local_steps, 1, 100_000)
        _bound("DiLoCoConfig", "outer_lr", self.outer_lr, 0.0, 100.0, lo_open=True)
        _bound("DiLoCoConfig", "outer_momentum", self.outer_momentum, 0.0, 1.0, hi_open=True)


@dataclass(frozen=True)
class SyncConfig:
    """Synchronous data parallel: every step, every worker's gradient all-reduced across regions."""


@dataclass(frozen=True)
class RunConfig:
    """One simulated training run: when it ends, how often it is evaluated, the seed.

    A run ends at whichever comes first: `budget_steps` global steps of tokens folded into the model
    of record (one global step = every worker's batch once; sync's step), or `time_cap_s` simulated
    seconds (None: no cap). The curve gets a point every `eval_every` global steps of tokens, or, when
    `eval_every_s` is set, every `eval_every_s` simulated seconds; and always one at the end.
    """

    budget_steps: int = 2000
    eval_every: int = 50  # global steps between validation points
    seed: int = 0
    time_cap_s: float | None = None
    eval_every_s: float | None = None

    def __post_init__(self) -> None:
        _bound("RunConfig", "budget_steps", self.budget_steps, 1)
        _bound("RunConfig", "eval_every", self.eval_every, 1)
        _bound("RunConfig", "seed", self.seed, 0)
        if self.time_cap_s is not None:
            _bound("RunConfig", "time_cap_s", self.time_cap_s, 0.0, lo_open=True)
        if self.eval_every_s is not None:
            _bound("RunConfig", "eval_every_s", self.eval_every_s, 0.0, lo_open=True)
