"""Quality of a conversion level: perplexity, top-1 agreement with the teacher, multiple-choice cloze accuracy.

Windows are scored with the model's dense forward (the active kinds), the output projection
applied in slices so an 8K window never holds (8K x vocab) logits at once. Cloze items come
from held-out text: a sentence with one word blanked, the word and three distractors of
similar length from the surrounding passage; the choice is the option whose continuation (the word
and the rest of the sentence) has the highest log-likelihood.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from tether.cloud.lm import Tokenizer, Transformer
from tether.cloud.lm.attention import rope_tables

__all__ = [
    "LONG_TEXT",
    "ClozeItem",
    "cloze_accuracy",
    "cloze_items",
    "cloze_scores",
    "long_windows",
    "score_windows",
    "short_windows",
    "windows",
]

LONG_TEXT = "shakespeare-val"  # the held-out text long enough for 8K windows


def windows(tokens: np.ndarray, n: int, T: int, seed: int) -> torch.Tensor:
    """n windows of T tokens at spread-out, seeded offsets: (n, T) int64."""
    if len(tokens) < T + 1:
        raise ValueError(f"a held-out text of {len(tokens)} tokens is too short for windows of {T}")
    rng = np.random.default_rng(seed)
    span = (len(tokens) - T) // n
    starts = [i * span + int(rng.integers(0, max(span - T, 1))) if span > T else i * span for i in range(n)]
    return torch.from_numpy(np.stack([tokens[s : s + T] for s in starts]).astype(np.int64))


def long_windows(texts: dict[str, np.ndarray], n: int, T: int) -> torch.Tensor:
    """The benchmark's long windows: n windows of T tokens of LONG_TEXT (seed 1)."""
    return windows(texts[LONG_TEXT], n, T, seed=1)


def short_windows(texts: dict[str, np.ndarray], T: int) -> torch.Tensor:
    """The benchmark's short windows: one window of T tokens of each held-out text (seed 2)."""
    return torch.stack([windows(t, 1, T, seed=2)[0] for t in texts.values()])


@torch.no_grad()
def _final_hidden(model: Transformer, tokens: torch.Tensor) -> torch.Tensor:
    T = tokens.shape[1]
    cos, sin = rope_tables(torch.arange(T), model.inv_freq)
    x = model.tok_emb(tokens)
    for block in model.layers:
        x = block(x, cos, sin)
    return model.norm(x)  # (B, T, n_embd)


@torch.no_grad()
def score_windows(
    model: Transformer,
    wins: torch.Tensor,
    teacher_top1: list[torch.Tensor] | None = None,
    slice_len: int = 1024,
) -> tuple[list[float], list[torch.Tensor], list[float], list[float]]:
    """Per window: perplexity of next-token prediction, the top-1 predictions, (with the teacher's)
    the fraction of positions where they agree, and the forward pass's speed in tokens/s."""
    ppls, tops, agree, speed = [], [], [], []
    for i, w in enumerate(wins):
        t0 = time.perf_counter()
        h = _final_hidden(model, w[None])[0]  # (T, E)
        speed.append(w.shape[0] / (time.perf_counter() - t0))
        nll, top = [], []
        for s in range(0, h.shape[0] - 1, slice_len):
            logits = F.linear(h[s : min(s + slice_len, h.shape[0] - 1)], model.output_weight)
            target = w[s + 1 : s + 1 + logits.shape[0]]
            nll.append(F.cross_entropy(logits, target, reduction="sum"))
            top.append(logits.argmax(-1))
        ppls.append(math.exp(float(sum(nll)) / (h.shape[0] - 1)))
        tops.append(torch.cat(top))
        if teacher_top1 is not None:
            agree.append(float((tops[-1] == teacher_top1[i]).float().mean()))
    return ppls, tops, agree, speed


@dataclass(frozen=True)
class ClozeItem:
    context: list[int]  # tokens before the blank
    options: list[list[int]]  # each: the candidate word and the rest of the sentence
    answer: int


_WORD = re.compile(r"[A-Za-z]{4,}")


def cloze_items(
    text: str, tokenizer: Tokenizer, n: int, seed: int, context_chars: int = 300, near_chars: int = 1500
) -> list[ClozeItem]:
    """n items from `text`: sentences of 8-40 words, a word (4+ letters) of the second half blanked;
    the three distractors are words of similar length from within `near_chars` of it."""
    rng = np.random.default_rng(seed)
    vocab = sorted(set(_WORD.findall(text)))
    by_len: dict[int, list[str]] = {}
    for w in vocab:
        by_len.setdefault(len(w), []).append(w)
    sentences = [m for m in re.finditer(r"[^.!?\n]+[.!?]", text) if 8 <= len(m.group().split()) <= 40]
    items: list[ClozeItem] = []
    for idx in rng.permutation(len(sentences)):
        if len(items) >= n:
            break
        m = sentences[int(idx)]
        sent = m.group()
        words = list(_WORD.finditer(sent))
        late = [w for w in words if w.start() >= len(sent) // 2]
        if not late:
            continue
        word = late[int(rng.integers(len(late)))]
        start = m.start() + word.start()
        lengths = (len(word.group()) - 1, len(word.group()), len(word.group()) + 1)
        # Distractors from the surrounding passage (same topic, same register), of similar length:
        # words drawn from the whole text were too easy to tell apart (every level scored 1.0).
        near = sorted(set(_WORD.findall(text[max(0, start - near_chars) : start + near_chars])))
        pool = [w for w in near if len(w) in lengths and w.lower() != word.group().lower()]
        if len(pool) < 3:
            pool = [w for k in lengths for w in by_len.get(k, []) if w.lower() != word.group().lower()]
        if len(pool) < 3:
            continue
        distractors = [pool[int(i)] for i in rng.choice(len(pool), 3, replace=False)]
        before = text[max(0, start - context_chars) : start].rstrip(" ")
        after = sent[word.end() :]
        answer = int(rng.integers(4))
        cands = distractors[:answer] + [word.group()] + distractors[answer:]
        context = tokenizer.encode(before, add_bos=False)
        options = [tokenizer.encode(before + " " + c + after, add_bos=False)[len(context) :] for c in cands]
        if any(len(o) == 0 for o in options):
            continue
        items.append(ClozeItem(context, options, answer))
    return items


@torch.no_grad()
def cloze_scores(model: Transformer, item: ClozeItem) -> list[float]:
    """Each option's log-likelihood after the item's context.

    The context runs once and the four options continue it (`Transformer.forward_from`): each
    item's tokens are about 70% context, so running it with every option cost twice the time. The
    output projection runs only at the positions that predict an option's tokens."""
    h_ctx, past = model.forward_from(torch.tensor([item.context]))
    T = max(len(o) for o in item.options)
    h, _ = model.forward_from(torch.tensor([o + [0] * (T - len(o)) for o in item.options]), past)
    scores = []
    for i, o in enumerate(item.options):
        # The first option token is predicted from the context's last position, the rest from the option's.
        rows = torch.cat((h_ctx[0, -1:], h[i, : len(o) - 1]))
        logits = F.linear(rows, model.output_weight)  # (len(o), V)
        chosen = logits.gather(1, torch.tensor(o)[:, None])[:, 0]
        scores.append(float((chosen - torch.logsumexp(logits, -1)).sum()))
    return scores


def cloze_accuracy(model: Transformer, items: list[ClozeItem]) -> float:
    """Fraction of items whose true option has the highest log-likelihood."""
    right = sum(int(np.argmax(cloze_scores(model, item))) == item.answer for item in items)
    return right / max(len(items), 1)
