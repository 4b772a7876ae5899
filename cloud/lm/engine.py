"""The engine: requests in, streamed tokens out, one model step at a time (continuous batching).

The main loop is three named steps (vLLM v1's shape), after draining the inbox:

    schedule  -> the scheduler picks who runs and how many tokens (scheduler.py)
    execute   -> one forward pass over the flattened tokens of every scheduled request
    process   -> sample, stream the outputs, finish requests and free their cache

Any thread may `submit`, `cancel`, change the knobs (`set_limits`) or run a function in
the engine thread between steps (`call`: layer conversion, cache export); the engine
thread (`start()`, or your own loop calling `step()`) is the only one that touches the
model, the cache and the scheduler. Failures are per request: an error in a step ends
the requests of that step with `FinishReason.ERROR` and frees their blocks; the engine
goes on.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from tether.cloud.lm.cache import CacheExport, CacheManager
from tether.cloud.lm.checkpoint import load_checkpoint
from tether.cloud.lm.config import EngineConfig, SchedulerConfig
from tether.cloud.lm.metrics import EngineMetrics
from tether.cloud.lm.model import Transformer
from tether.cloud.lm.request import FinishReason, Request, RequestOutput, RequestState
from tether.cloud.lm.sampling import SamplingParams, sample
from tether.cloud.lm.scheduler import FcfsScheduler, Scheduler, SchedulerOutput
from tether.cloud.lm.tokenizer import Tokenizer

__all__ = ["LLMEngine", "QueueFull", "RequestRejected"]

log = logging.getLogger("tether.lm")


class QueueFull(RuntimeError):
    """Too many requests wait already (`SchedulerConfig.max_queue`); recoverable: retry later (HTTP 429)."""


class RequestRejected(ValueError):
    """The request can never run (too long for the context or the cache); not recoverable (HTTP 400)."""


class LLMEngine:
    def __init__(
        self,
        model: Transformer,
        tokenizer: Tokenizer,
        config: EngineConfig | None = None,
        *,
        scheduler: Scheduler | None = None,
        name: str = "model",
    ) -> None:
        self.config = config = config or EngineConfig()
        torch.set_num_threads(config.threads)
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.max_context = min(config.max_context or model.config.context_len, model.config.context_len)
        self.cache = CacheManager(model.config, config.cache, model.slots, self.max_context)
        self.scheduler = scheduler or FcfsScheduler()
        self.limits: SchedulerConfig = config.scheduler
        self.metrics = EngineMetrics()
        self.eos_ids = frozenset(tokenizer.eos_ids)
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._requests: dict[str, Request] = {}
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._outstanding = 0  # submitted and not yet finished
        self._running = 0  # as of the last step
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def load(cls, path: Path | str | None = None, config: EngineConfig | None = None, **kw: Any) -> LLMEngine:
        """The engine for a checkpoint (default: the `lm_model` setting, else the embedded SmolLM2).

        The weights are copied with one torch thread, so loading starts no OpenMP team in the
        calling thread (see `start`: a second team slows the engine's by a quarter)."""
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            ckpt = load_checkpoint(path)
            model = Transformer.from_checkpoint(ckpt)
        finally:
            torch.set_num_threads(threads)
        return cls(model, ckpt.tokenizer, config, name=kw.pop("name", ckpt.name), **kw)

    # --- any thread ----------------------------------------------------------------------------

    def submit(
        self,
        prompt: Sequence[int] | str,
        params: SamplingParams | None = None,
        *,
        request_id: str | None = None,
        on_output: Callable[[RequestOutput], None] | None = None,
        import_cache: CacheExport | None = None,
    ) -> str:
        """Queue a request; returns its id. Raises RequestRejected (never fits) or QueueFull (retry later).

        `import_cache`: start from an exported cache whose tokens are a prefix of the prompt
        (the prompt must extend it by at least one token when it has STATE layers)."""
        params = params or SamplingParams()
        ids = self.tokenizer.encode(prompt) if isinstance(prompt, str) else list(prompt)
        self._check_fits(len(ids), params)
        if import_cache is not None:
            import_cache = self._fit_import(import_cache, ids)
        with self._lock:
            waiting = self._outstanding - self._running
            if waiting >= self.limits.max_queue:
                self.metrics.record_rejected()
                raise QueueFull(
                    f"{waiting} requests wait already (max_queue={self.limits.max_queue}); retry later"
                )
            self._outstanding += 1
        rid = request_id or f"req-{next(self._ids)}"
        self._inbox.put(("add", Request(rid, ids, params, on_output=on_output, import_cache=import_cache)))
        self._wake.set()
        return rid

    def _check_fits(self, n_prompt: int, params: SamplingParams) -> None:
        if n_prompt < 1:
            raise RequestRejected("the prompt must have at least one token, but it has none")
        if n_prompt + 1 > self.max_context:
            raise RequestRejected(
                f"the prompt has {n_prompt} tokens; the context holds {self.max_context} tokens, prompt and "
                f"output together, so the prompt must have at most {self.max_context - 1}"
            )
        bs = self.cache.block_size
        need = -(-(n_prompt + 1) // bs) * self.model.config.n_layer
        if need > self.cache.kv_pool.num_blocks:
            raise RequestRejected(
                f"the prompt has {n_prompt} tokens: its cache needs {need} KV blocks but the pool has "
                f"{self.cache.kv_pool.num_blocks}; raise CacheConfig.kv_cache_bytes"
            )

    def _fit_import(self, export: CacheExport, ids: list[int]) -> CacheExport:
        n = export.num_tokens
        if ids[:n] != export.token_ids[: len(ids)]:
            raise RequestRejected("import_cache: the prompt must start with the exported cache's tokens")
        if n < len(ids):
            return export
        # The cache covers the whole prompt, but the last prompt token must run to give logits.
        if any("k" not in layer for layer in export.layers):
            raise RequestRejected(
                "import_cache with recurrent-state layers: the prompt must extend the export"
            )
        keep = len(ids) - 1
        layers = [{k: t[:keep] for k, t in layer.items()} for layer in export.layers]
        return CacheExport(export.token_ids[:keep], list(export.kinds), layers)

    def cancel(self, request_id: str) -> None:
        """End a request (no-op when it has ended); its last output has `FinishReason.ABORT`."""
        self._inbox.put(("cancel", request_id))
        self._wake.set()

    def call(self, fn: Callable[[LLMEngine], Any]) -> Future:
        """Run fn(engine) in the engine thread between two steps; returns a Future of its result."""
        fut: Future = Future()
        self._inbox.put(("call", fn, fut))
        self._wake.set()
        return fut

    def set_limits(
        self, *, max_batch_size: int | None = None, max_tokens_per_step: int | None = None
    ) -> None:
        """Change the scheduler's knobs; they apply from the next step (validated: raises ConfigError)."""
        changes = {
            k: v
            for k, v in (("max_batch_size", max_batch_size), ("max_tokens_per_step", max_tokens_per_step))
            if v is not None
        }
        self.limits = replace(self.limits, **changes)

    def convert_layer(self, layer: int, kind: str, *, in_flight: bool = True) -> Future:
        """New sequences use `kind` at `layer`; with `in_flight`, running ones are converted through
        the conversion hook. The Future gives {request_id: error} for those that could not convert."""

        def run(engine: LLMEngine) -> dict[str, str]:
            slot = engine.model.slots[layer]
            slot.impl(kind)
            slot.active = kind
            failed: dict[str, str] = {}
            for req in list(engine._requests.values()):
                if in_flight and req.seq is not None:
                    try:
                        engine.cache.convert_layer(req.seq, layer, kind)
                    except NotImplementedError as exc:
                        failed[req.request_id] = str(exc)
            return failed

        return self.call(run)

    def revert_layer(self, layer: int, kind: str = "softmax") -> Future:
        """New sequences use `kind` at `layer` again; sequences in flight keep the kind they have."""

        def run(engine: LLMEngine) -> None:
            engine.model.slots[layer].impl(kind)
            engine.model.slots[layer].active = kind

        return self.call(run)

    def export(self, request_id: str) -> Future:
        """A running request's cache (Future of CacheExport); import it with `submit(..., import_cache=)`,
        prompt = the request's tokens so far (`Request.tokens`), to continue where it is."""

        def run(engine: LLMEngine) -> CacheExport:
            req = engine._requests.get(request_id)
            if req is None or req.seq is None:
                raise KeyError(f"request {request_id!r} is not running (no cache to export)")
            return engine.cache.export_sequence(req.seq, req.tokens)

        return self.call(run)

    def request_tokens(self, request_id: str) -> Future:
        """Future of the prompt and output token ids of a live request."""
        return self.call(lambda e: list(e._requests[request_id].tokens))

    # --- the loop (engine thread) ----------------------------------------------------------------

    def step(self) -> int:
        """Drain the inbox, then schedule -> execute -> process. Returns the tokens computed."""
        self._drain_inbox()
        plan = self.scheduler.schedule(self.cache, self.limits)
        for req in plan.preempted:
            log.debug("preempted %s (recomputed later)", req.request_id)
        if plan.scheduled:
            try:
                logits = self._execute(plan)
                self._process(plan, logits)
            except Exception as exc:  # per-request failure: end this step's requests, keep serving
                log.exception("engine step failed")
                for s in plan.scheduled:
                    if s.request.state is not RequestState.FINISHED:
                        self._end(
                            s.request, s.request.finish(FinishReason.ERROR, f"{type(exc).__name__}: {exc}")
                        )
        self._running = self.scheduler.num_running
        usage = self.cache.usage()
        prompt_tokens = sum(s.num_tokens for s in plan.scheduled if s.num_tokens > 1)
        out_tokens = sum(1 for s in plan.scheduled if s.samples)
        self.metrics.record_step(
            out_tokens,
            prompt_tokens,
            self.scheduler.num_waiting,
            self._running,
            usage.kv_blocks_used,
            usage.kv_blocks_total,
        )
        return plan.num_tokens

    def _drain_inbox(self) -> None:
        while True:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return
            if item[0] == "add":
                req: Request = item[1]
                req.start(self.tokenizer)
                self._requests[req.request_id] = req
                self.scheduler.add(req)
            elif item[0] == "cancel":
                req = self._requests.get(item[1])
                if req is not None:
                    self._end(req, req.finish(FinishReason.ABORT))
            else:
                _, fn, fut = item
                try:
                    fut.set_result(fn(self))
                except Exception as exc:
                    fut.set_exception(exc)

    def _execute(self, plan: SchedulerOutput) -> torch.Tensor:
        reqs = [s.request for s in plan.scheduled]
        seqs = [r.seq for r in reqs]
        chunks = [
            r.tokens[r.seq.num_tokens : r.seq.num_tokens + s.num_tokens] for r, s in zip(reqs, plan.scheduled)
        ]
        step = self.cache.prepare_step(seqs, chunks, plan.num_decode, [s.samples for s in plan.scheduled])
        with torch.inference_mode():
            logits = self.model.forward_step(step, packed_weights=self.config.packed_weights)
        for r, s in zip(reqs, plan.scheduled, strict=True):
            self.cache.commit(r.seq, s.num_tokens, r.tokens)
        return logits

    def _process(self, plan: SchedulerOutput, logits: torch.Tensor) -> None:
        reqs = [s.request for s in plan.scheduled if s.samples]
        if not reqs:
            return
        tokens = sample(logits, [r.params for r in reqs], [r.generator for r in reqs])
        now = time.perf_counter()
        for req, tok in zip(reqs, tokens, strict=True):
            first = req.first_token_at is None
            out = req.append(tok, self.eos_ids, now)
            if first:
                self.metrics.record_first_token(now - req.arrival)
            if not out.finished and req.num_tokens >= self.max_context:
                end = req.finish(FinishReason.LENGTH)
                out.text += end.text
                out.finished, out.finish_reason = True, FinishReason.LENGTH
            if out.finished:
                self._end(req, out)
            else:
                self._emit(req, out)

    def _end(self, req: Request, out: RequestOutput) -> None:
        self.scheduler.remove(req)
        if req.seq is not None:
            self.cache.free(req.seq.seq_id)
            req.seq = None
        if self._requests.pop(req.request_id, None) is not None:
            with self._lock:
                self._outstanding -= 1
        n = len(req.output_ids)
        tpot = (req.last_token_at - req.first_token_at) / (n - 1) if n > 1 and req.first_token_at else None
        self.metrics.record_finish(out.finish_reason.value if out.finish_reason else "stop", tpot)
        self._emit(req, out)

    def _emit(self, req: Request, out: RequestOutput) -> None:
        if req.on_output is None:
            return
        try:
            req.on_output(out)
        except Exception:  # a consumer's bug must not stop the engine
            log.exception("on_output of %s raised", req.request_id)

    # --- running it --------------------------------------------------------------------------------

    def has_work(self) -> bool:
        return not self._inbox.empty() or self.scheduler.has_work()

    def run_until_idle(self) -> None:
        """Step in this thread until no request is left (when no background thread runs)."""
        while self.has_work():
            self.step()

    def start(self) -> LLMEngine:
        """Run the loop (`run`) in a background thread (daemon); `stop()` ends it.

        With `threads` > 1, keep other threads of the process from running multi-threaded torch
        work meanwhile: each thread that does gets its own OpenMP team, and once libgomp's threads
        outnumber the cores it stops spin-waiting between parallel regions, for every team (measured
        on 2 cores: a batch-1 step 38 -> 49 ms). Or call `run` in the thread that does that work."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self.run, kwargs={"until": self._stop.is_set}, name="lm-engine", daemon=True
            )
            self._thread.start()
        return self

    def run(self, until: Callable[[], bool]) -> None:
        """The loop, in this thread: step while there is work, else wait for a request (or 50 ms),
        until `until()` is true (checked between steps). Requests still running then stay queued."""
        torch.set_num_threads(self.config.threads)
        while not until():
            if self.has_work():
                self.step()
            else:
                self._wake.wait(0.05)
                self._wake.clear()

    def stop(self) -> None:
        """Stop the loop and end every request (ABORT), so no block stays allocated."""
        if self._thread is not None:
            self._stop.set()
            self._wake.set()
            self._thread.join()
            self._thread = None
        self._drain_inbox()
        for req in list(self._requests.values()):
            self._end(req, req.finish(FinishReason.ABORT))

    def __enter__(self) -> LLMEngine:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def generate(
        self, prompts: Sequence[Sequence[int] | str], params: SamplingParams | None = None
    ) -> list[RequestOutput]:
        """Run prompts to the end; one final RequestOutput each with every output token and the text.

        Steps in this thread when no background loop runs, otherwise waits for it."""
        results: dict[str, RequestOutput] = {}
        done = threading.Event()
        finished = [0]

        def collect(out: RequestOutput) -> None:
            acc = results.setdefault(out.request_id, RequestOutput(out.request_id, [], ""))
            acc.token_ids += out.token_ids
            acc.text += out.text
            if out.finished:
                acc.finished, acc.finish_reason, acc.error = True, out.finish_reason, out.error
                acc.prompt_tokens, acc.completion_tokens = out.prompt_tokens, out.completion_tokens
                acc.cached_tokens = out.cached_tokens
                finished[0] += 1
                if finished[0] == len(prompts):
                    done.set()

        ids = [self.submit(p, params, on_output=collect) for p in prompts]
        if self._thread is None:
            while not done.is_set():
                self.step()
        else:
            done.wait()
        return [results[i] for i in ids]
