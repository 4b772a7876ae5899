"""Sampling parameters and the sampler: temperature, top-k, top-p (nucleus; Holtzman et al. 2020), seed.

Greedy rows (temperature 0) are one vectorised argmax; sampled rows each use their
request's own `torch.Generator`, so a seeded request draws the same tokens whatever
else shares its batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

__all__ = ["SamplingError", "SamplingParams", "sample"]


class SamplingError(ValueError):
    """A sampling parameter breaks a rule (HTTP 400 at the server)."""


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0  # 0 = greedy
    top_p: float = 1.0  # keep the smallest set of tokens whose probability reaches top_p
    top_k: int = 0  # keep the k most likely tokens; 0 = all
    max_tokens: int = 16  # output tokens at most
    stop: tuple[str, ...] = ()  # stop strings: output ends before the first one; not returned
    stop_token_ids: tuple[
        int, ...
    ] = ()  # extra token ids that end the output (the tokenizer's EOS always do)
    ignore_eos: bool = False  # generate max_tokens whatever (benchmarks)
    seed: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.temperature <= 100.0:
            raise SamplingError(
                f"temperature must satisfy 0 <= temperature <= 100, but got {self.temperature}"
            )
        if not 0.0 < self.top_p <= 1.0:
            raise SamplingError(f"top_p must satisfy 0 < top_p <= 1, but got {self.top_p}")
        if self.top_k < 0:
            raise SamplingError(f"top_k must be >= 0 (0 = off), but got {self.top_k}")
        if self.max_tokens < 1:
            raise SamplingError(f"max_tokens must be >= 1, but got {self.max_tokens}")
        if any(not s for s in self.stop):
            raise SamplingError(f"stop strings must be non-empty, but got {list(self.stop)!r}")
        if self.seed is not None and not 0 <= self.seed < 2**63:
            raise SamplingError(f"seed must satisfy 0 <= seed < 2**63, but got {self.seed}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0 or self.top_k == 1


def _filter(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """logits (V,) with tokens outside top-k / top-p set to -inf."""
    if 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        # Drop a token when the tokens before it already reach top_p (the first always stays).
        drop = (cum - sorted_logits.softmax(-1)) >= top_p
        logits = logits.masked_fill(torch.zeros_like(drop).scatter_(0, order, drop), float("-inf"))
    return logits


def sample(
    logits: torch.Tensor, params: Sequence[SamplingParams], generators: Sequence[torch.Generator | None]
) -> list[int]:
    """One token per row of logits (S, V), by each row's parameters and generator."""
    out = logits.argmax(dim=-1).tolist()
    for i, p in enumerate(params):
        if p.greedy:
            continue
        row = _filter(logits[i] / p.temperature, p.top_k, p.top_p)
        probs = row.softmax(-1)
        out[i] = int(torch.multinomial(probs, 1, generator=generators[i]).item())
    return out
