"""A generation request inside the engine: its tokens, its state, its outputs, its timings.

The engine owns `Request` objects (engine thread only); callers see `RequestOutput`s,
delivered through the request's `on_output` callback from the engine thread: one per
step that produced text or tokens, and a last one with `finished` set. Stop strings are
handled here: text that might be the start of a stop string is held back until it is not.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from tether.cloud.lm.cache import CacheExport, SequenceCache
from tether.cloud.lm.sampling import SamplingParams
from tether.cloud.lm.tokenizer import StreamDecoder, Tokenizer

__all__ = ["FinishReason", "Request", "RequestOutput", "RequestState"]


class RequestState(enum.Enum):
    WAITING = "waiting"  # queued; no cache
    RUNNING = "running"  # has a cache; prefilling or decoding
    FINISHED = "finished"


class FinishReason(str, enum.Enum):
    STOP = "stop"  # an EOS token or a stop string
    LENGTH = "length"  # max_tokens, or the context is full
    ABORT = "abort"  # cancelled (client went away, or `cancel`)
    ERROR = "error"  # the engine failed on this request; `RequestOutput.error` says why


@dataclass
class RequestOutput:
    """One streamed update of a request: the new tokens and text since the last update."""

    request_id: str
    token_ids: list[int]
    text: str
    finished: bool = False
    finish_reason: FinishReason | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens served from the prefix cache or an imported cache
    error: str | None = None


@dataclass(eq=False)
class Request:
    request_id: str
    prompt_ids: list[int]
    params: SamplingParams
    on_output: Callable[[RequestOutput], None] | None = None
    import_cache: CacheExport | None = None  # start from this cache (Symphony's migration)
    arrival: float = field(default_factory=time.perf_counter)
    # --- engine state -------------------------------------------------------------------------
    state: RequestState = RequestState.WAITING
    output_ids: list[int] = field(default_factory=list)
    seq: SequenceCache | None = None
    generator: torch.Generator | None = None
    first_token_at: float | None = None
    last_token_at: float | None = None
    finish_reason: FinishReason | None = None
    cached_tokens: int = 0
    num_preemptions: int = 0
    _decoder: StreamDecoder | None = None
    _text: str = ""  # output text so far (stop strings cut off)
    _emitted: int = 0  # characters of _text already sent
    _cut: bool = False  # the text was cut at a stop string: nothing after it is sent

    @property
    def tokens(self) -> list[int]:
        """Prompt and output so far: what the cache must cover (minus the last sampled token)."""
        return self.prompt_ids + self.output_ids

    @property
    def num_tokens(self) -> int:
        return len(self.prompt_ids) + len(self.output_ids)

    @property
    def remaining(self) -> int:
        """Tokens still to run through the model before the next sample."""
        return self.num_tokens - (self.seq.num_tokens if self.seq is not None else 0)

    @property
    def text(self) -> str:
        return self._text

    def start(self, tokenizer: Tokenizer) -> None:
        self._decoder = StreamDecoder(tokenizer)
        if not self.params.greedy:
            self.generator = torch.Generator()
            if self.params.seed is not None:
                self.generator.manual_seed(self.params.seed)
            else:
                self.generator.seed()

    def append(self, token: int, eos_ids: frozenset[int], now: float) -> RequestOutput:
        """Record a sampled token; returns the update to stream (finished set when it ends)."""
        self.first_token_at = self.first_token_at or now
        self.last_token_at = now
        p = self.params
        if (token in eos_ids and not p.ignore_eos) or token in p.stop_token_ids:
            self.output_ids.append(token)
            return self._finish_output(FinishReason.STOP, [token], flush=True)
        self.output_ids.append(token)
        assert self._decoder is not None
        self._text += self._decoder.push(token)
        if p.stop:
            # Only a stop string that ends in the new text can be new; search from before it.
            window = max(len(s) for s in p.stop) + 16
            start = max(0, len(self._text) - window)
            hits = [i for s in p.stop if (i := self._text.find(s, start)) >= 0]
            if hits:
                self._text = self._text[: min(hits)]
                self._cut = True
                return self._finish_output(FinishReason.STOP, [token], flush=True)
        if len(self.output_ids) >= p.max_tokens:
            return self._finish_output(FinishReason.LENGTH, [token], flush=True)
        return RequestOutput(self.request_id, [token], self._take_text(hold=True), **self._counts())

    def finish(self, reason: FinishReason, error: str | None = None) -> RequestOutput:
        """End the request now (cancel, error, context full)."""
        out = self._finish_output(reason, [], flush=reason is not FinishReason.ERROR)
        out.error = error
        return out

    def _finish_output(self, reason: FinishReason, tokens: list[int], flush: bool) -> RequestOutput:
        self.state = RequestState.FINISHED
        self.finish_reason = reason
        if flush and self._decoder is not None and not self._cut:
            self._text += self._decoder.flush()  # characters held for their missing bytes
        text = self._take_text(hold=False) if flush else ""
        return RequestOutput(self.request_id, tokens, text, True, reason, **self._counts())

    def _counts(self) -> dict[str, int]:
        return {
            "prompt_tokens": len(self.prompt_ids),
            "completion_tokens": len(self.output_ids),
            "cached_tokens": self.cached_tokens,
        }

    def _take_text(self, hold: bool) -> str:
        """Unsent text; with `hold`, keep back a tail that may begin a stop string."""
        end = len(self._text)
        if hold and self.params.stop:
            for s in self.params.stop:
                for k in range(min(len(s) - 1, end - self._emitted), 0, -1):
                    if self._text.endswith(s[:k]):
                        end = min(end, len(self._text) - k)
                        break
        out = self._text[self._emitted : end]
        self._emitted = end
        return out
