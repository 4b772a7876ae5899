"""HALoS's parameter servers (arXiv 2506.04531 Alg. 1) as plain state machines: no clock, no I/O.

The simulator and the Ray actors call the same methods; they only decide *when* a message arrives.
A local server with `push_every=None` is Async Local-SGD's single server (arXiv 2401.09135).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from tether.cloud.halos.config import DelayedNesterovConfig, HalosConfigError
from tether.cloud.halos.optim import DelayedNesterov

__all__ = ["GlobalServer", "LocalServer", "Push", "ServerStats"]


@dataclass
class Push:
    """A local server's accumulated change since its last merge, on its way to the global server."""

    server_id: int
    pseudo_grad: torch.Tensor  # theta_L at last merge - theta_L now, (P,)
    steps: int  # worker local steps folded into it
    loss: float  # mean worker training loss over those updates


@dataclass
class ServerStats:
    """Counters a server keeps for telemetry."""

    updates: int = 0  # pseudo-gradients applied
    steps: int = 0  # worker local steps those carried
    staleness_sum: int = 0  # server versions between a model's dispatch and its delta's arrival
    staleness_max: int = 0
    pushes: int = 0
    merges: int = 0
    recent_losses: list[float] = field(default_factory=list)

    @property
    def staleness_mean(self) -> float:
        return self.staleness_sum / self.updates if self.updates else 0.0


class LocalServer:
    """A region's parameter server: delayed Nesterov per worker delta; every K updates, push to the global
    server (one push in flight) and later merge theta_L <- (1 - alpha) theta_L + alpha theta_G.

    Call order: `dispatch()` when a worker starts a task; `receive(...)` when its delta arrives (returns
    the Push to send, if one is due); `merge(theta_G)` when the global model arrives.
    """

    def __init__(
        self,
        server_id: int,
        region: int,
        theta0: torch.Tensor,
        opt: DelayedNesterovConfig,
        push_every: int | None,
        merge_alpha: float = 0.25,
    ) -> None:
        self.server_id = server_id
        self.region = region
        self.theta = theta0.clone()  # theta_L, (P,)
        self.opt = DelayedNesterov(theta0.numel(), opt, theta0.device)
        self.version = 0  # updates applied so far
        self._merged_theta = theta0.clone()  # theta_L right after the last merge
        self._merged_version = 0
        self.in_flight = False
        self._pending_steps = 0
        self._pending_losses: list[float] = []
        self.stats = ServerStats()
        self.push_every: int | None = None  # None: never push (Async Local-SGD's lone server)
        self.merge_alpha = merge_alpha
        self.set_knobs(push_every=push_every, merge_alpha=merge_alpha)

    def set_knobs(self, *, push_every: int | None = None, merge_alpha: float | None = None) -> None:
        """Change K or alpha while running (the bus parameters); takes effect at the next update."""
        if push_every is not None and push_every < 1:
            raise HalosConfigError(f"K (push_every) >= 1 must hold, but got {push_every}")
        if merge_alpha is not None and not 0.0 < merge_alpha <= 1.0:
            raise HalosConfigError(f"0 < alpha (merge_alpha) <= 1 must hold, but got {merge_alpha}")
        if push_every is not None:
            self.push_every = push_every
        if merge_alpha is not None:
            self.merge_alpha = merge_alpha

    def dispatch(self) -> tuple[torch.Tensor, int]:
        """The model a worker starts from (a copy) and the version it was taken at."""
        return self.theta.clone(), self.version

    def receive(
        self, pseudo_grad: torch.Tensor, steps: int, loss: float, dispatched_version: int
    ) -> Push | None:
        """Apply one worker's pseudo-gradient; returns a Push when K updates have gathered and none is in flight."""
        staleness = self.version - dispatched_version
        self.opt.step(self.theta, pseudo_grad)
        self.version += 1
        st = self.stats
        st.updates += 1
        st.steps += steps
        st.staleness_sum += staleness
        st.staleness_max = max(st.staleness_max, staleness)
        st.recent_losses = [*st.recent_losses[-31:], loss]
        self._pending_steps += steps
        self._pending_losses.append(loss)
        due = self.push_every is not None and self.version - self._merged_version >= self.push_every
        if not due or self.in_flight:
            return None
        push = Push(
            self.server_id,
            self._merged_theta - self.theta,
            self._pending_steps,
            sum(self._pending_losses) / len(self._pending_losses),
        )
        self.in_flight = True
        self._pending_steps, self._pending_losses = 0, []
        st.pushes += 1
        return push

    def merge(self, theta_global: torch.Tensor) -> None:
        """The global model came back: theta_L <- (1 - alpha) theta_L + alpha theta_G; a new push may follow K updates on."""
        self.theta.mul_(1.0 - self.merge_alpha).add_(theta_global, alpha=self.merge_alpha)
        self._merged_theta = self.theta.clone()
        self._merged_version = self.version
        self.in_flight = False
        self.stats.merges += 1


class GlobalServer:
    """The global parameter server: delayed Nesterov per push; answers the sending region with its model."""

    def __init__(self, region: int, theta0: torch.Tensor, opt: DelayedNesterovConfig) -> None:
        self.region = region
        self.theta = theta0.clone()  # theta_G, (P,)
        self.opt = DelayedNesterov(theta0.numel(), opt, theta0.device)
        self.stats = ServerStats()

    def receive(self, push: Push) -> torch.Tensor:
        """Apply a local server's push; returns the new global model (a copy) for that server."""
        self.opt.step(self.theta, push.pseudo_grad)
        self.stats.updates += 1
        self.stats.steps += push.steps
        self.stats.recent_losses = [*self.stats.recent_losses[-31:], push.loss]
        return self.theta.clone()
