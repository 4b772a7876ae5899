"""Token streams for DSLA: the distillation corpus and the held-out texts of the evaluation (offline only).

Distillation reads the training plays of the Gutenberg Shakespeare corpus (cloud/data/gutenberg)
and ShareGPT training conversations (cloud/data/sharegpt) in the model's chat template. Held out: the validation plays (split by play, so never seen in another spelling),
ShareGPT's validation conversations, and text from outside every distillation corpus: the Python language reference's topic pages
that ship with CPython (`pydoc_data.topics`), modern technical English unlike either corpus.
Token arrays are cached under the artefacts folder, keyed by the tokenizer and the text.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np

from tether.cloud.data import gutenberg
from tether.cloud.lm.tokenizer import Tokenizer
from tether.settings import settings

__all__ = ["distill_sources", "heldout_texts", "tokens", "train_text"]


SHAREGPT_TRAIN = 1500  # conversations: about as much text as the training plays
SHAREGPT_VAL = 300


def distill_sources() -> list[str]:
    """The corpora distillation reads (recorded in the chain's manifest)."""
    return ["shakespeare-train (both editions)", f"sharegpt-train (first {SHAREGPT_TRAIN} conversations)"]


def _sharegpt_text(tokenizer: Tokenizer, split: str, limit: int) -> str:
    """Conversations rendered with the model's chat template (the format it serves), one after another."""
    from tether.cloud.data import sharegpt

    convs = sharegpt.load(split, min_turns=2, limit=limit)
    return "\n".join(tokenizer.apply_chat_template(c.messages(), add_generation_prompt=False) for c in convs)


def train_text(tokenizer: Tokenizer) -> str:
    """The distillation text: Shakespeare's training plays (both editions), then ShareGPT conversations."""
    return gutenberg.load().text("train") + "\n\n" + _sharegpt_text(tokenizer, "train", SHAREGPT_TRAIN)


def _outside() -> str:
    import pydoc_data.topics as topics

    return "\n\n".join(topics.topics[k] for k in sorted(topics.topics))


def heldout_texts(tokenizer: Tokenizer) -> dict[str, Callable[[], str]]:
    """Held-out texts by name (loaded lazily): Shakespeare's validation plays (modern spelling),
    held-out ShareGPT conversations, and the Python reference (outside every distillation corpus)."""
    return {
        "shakespeare-val": lambda: gutenberg.load(editions=("modern",)).text("val"),
        "sharegpt-val": lambda: _sharegpt_text(tokenizer, "val", SHAREGPT_VAL),
        "python-docs": _outside,
    }


def tokens(tokenizer: Tokenizer, name: str, text: Callable[[], str]) -> np.ndarray:
    """The token ids of `text()` as int32, cached in the artefacts folder by tokenizer and content."""
    body = text()
    vocab = tokenizer.backend.to_str() if hasattr(tokenizer.backend, "to_str") else repr(tokenizer.vocab_size)
    key = hashlib.sha256(vocab.encode() + b"\0" + body.encode()).hexdigest()[:16]
    path = settings().artefact_dir("dsla") / "tokens" / f"{name}-{key}.npy"
    if path.is_file():
        return np.load(path)
    ids = np.asarray(tokenizer.encode(body, add_bos=False), dtype=np.int32)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, ids)
    return ids
