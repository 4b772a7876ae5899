"""Iteration-level scheduling (Orca; Yu et al. 2022): the `Scheduler` interface and the FCFS scheduler.

Every engine step, the scheduler decides which requests run and how many of their tokens:
one token for a request that decodes, a chunk of the prompt for one that prefills
(chunked prefill, so a long prompt does not stall everyone's decoding), all within
`max_batch_size` sequences and `max_tokens_per_step` tokens. Requests join and leave
between steps (continuous batching). The scheduler owns admission into the cache: it
creates a request's `SequenceCache`, allocates the blocks a step needs, and preempts
(frees a request's cache and requeues it for recomputation) when the pool runs dry.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass, field

from tether.cloud.lm.block_pool import OutOfBlocks
from tether.cloud.lm.cache import CacheManager
from tether.cloud.lm.config import SchedulerConfig
from tether.cloud.lm.request import Request, RequestState

__all__ = ["FcfsScheduler", "ScheduledRequest", "Scheduler", "SchedulerOutput"]


@dataclass
class ScheduledRequest:
    request: Request
    num_tokens: int  # tokens of request.tokens[seq.num_tokens:] to run this step
    samples: bool  # this step reaches the end of the request's tokens: it samples the next one

    @classmethod
    def of(cls, request: Request, num_tokens: int) -> ScheduledRequest:
        return cls(request, num_tokens, num_tokens == request.remaining)


@dataclass
class SchedulerOutput:
    """What one step runs. Single-token entries come first (the model batches their attention)."""

    scheduled: list[ScheduledRequest] = field(default_factory=list)
    preempted: list[Request] = field(default_factory=list)  # lost their cache this step; requeued

    @property
    def num_decode(self) -> int:
        return sum(1 for s in self.scheduled if s.num_tokens == 1)

    @property
    def num_tokens(self) -> int:
        return sum(s.num_tokens for s in self.scheduled)


class Scheduler(ABC):
    """Decides, each step, who runs. Only the engine thread calls it.

    - `add(request)`: a request arrived (called when the engine drains its inbox, before `schedule`).
    - `remove(request)`: a request ended (finished, cancelled, errored); forget it. Its cache
      is freed by the engine right after.
    - `schedule(cache, limits)`: once at the start of each step. Returns the requests to run
      with their token counts, single-token ones first. Must have created (`cache.new_sequence`
      or `cache.import_sequence`) and grown (`cache.append_slots`) the cache of every request
      it schedules; may free the caches of requests it preempts (state back to WAITING).
      `limits` is read each call, so a knob changed between steps applies at the next one.
    - `num_waiting` / `num_running`: for metrics and admission control (HTTP 429).
    """

    @abstractmethod
    def add(self, request: Request) -> None: ...

    @abstractmethod
    def remove(self, request: Request) -> None: ...

    @abstractmethod
    def schedule(self, cache: CacheManager, limits: SchedulerConfig) -> SchedulerOutput: ...

    @property
    @abstractmethod
    def num_waiting(self) -> int: ...

    @property
    @abstractmethod
    def num_running(self) -> int: ...

    def has_work(self) -> bool:
        return self.num_waiting + self.num_running > 0


class FcfsScheduler(Scheduler):
    """First come, first served; running requests first, then admission in arrival order.

    Each step: every running request gets its next token (or prompt chunk) while batch and
    token budgets last; then waiting requests are admitted in order while a slot, tokens
    and blocks remain. When a running request needs a block and none is free, the most
    recently admitted request is preempted (recompute later, as vLLM does).
    """

    def __init__(self) -> None:
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []
        self.preemptions = 0  # requests that lost their cache to make room (recomputed later)

    @property
    def num_waiting(self) -> int:
        return len(self.waiting)

    @property
    def num_running(self) -> int:
        return len(self.running)

    def add(self, request: Request) -> None:
        self.waiting.append(request)

    def remove(self, request: Request) -> None:
        if request in self.running:
            self.running.remove(request)
        elif request in self.waiting:
            self.waiting.remove(request)

    def _preempt(self, cache: CacheManager, request: Request, out: SchedulerOutput) -> None:
        self.running.remove(request)
        if request.seq is not None:
            cache.free(request.seq.seq_id)
        request.seq = None
        request.state = RequestState.WAITING
        request.num_preemptions += 1
        self.preemptions += 1
        self.waiting.appendleft(request)
        out.preempted.append(request)

    def schedule(self, cache: CacheManager, limits: SchedulerConfig) -> SchedulerOutput:
        out = SchedulerOutput()
        budget = limits.max_tokens_per_step
        decode: list[ScheduledRequest] = []
        chunks: list[ScheduledRequest] = []
        for req in list(self.running):
            if req not in self.running:  # preempted below by an older request
                continue
            if len(decode) + len(chunks) >= limits.max_batch_size or budget == 0:
                break  # over the (possibly lowered) batch size: this one sits out the step, cache kept
            n = min(req.remaining, budget)
            while not cache.can_append(req.seq, n):
                victim = self.running[-1]
                self._preempt(cache, victim, out)
                if victim is req:
                    break
            if req.seq is None:
                continue
            cache.append_slots(req.seq, n)
            (decode if n == 1 else chunks).append(ScheduledRequest.of(req, n))
            budget -= n
        while self.waiting and budget > 0 and len(decode) + len(chunks) < limits.max_batch_size:
            req = self.waiting[0]
            if req.seq is None:
                try:
                    if req.import_cache is not None:
                        req.seq = cache.import_sequence(id(req), req.import_cache)
                        req.import_cache = None
                    else:
                        req.seq = cache.new_sequence(id(req), req.tokens)
                except OutOfBlocks:
                    break  # the pool is full: wait for running requests to finish
                req.cached_tokens = max(req.cached_tokens, req.seq.num_tokens)
            n = min(req.remaining, budget)
            if not cache.can_append(req.seq, n):
                cache.free(req.seq.seq_id)
                req.seq = None
                break
            cache.append_slots(req.seq, n)
            self.waiting.popleft()
            req.state = RequestState.RUNNING
            self.running.append(req)
            (decode if n == 1 else chunks).append(ScheduledRequest.of(req, n))
            budget -= n
        out.scheduled = decode + chunks
        return out
