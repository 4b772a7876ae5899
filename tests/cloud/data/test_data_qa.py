"""The small QA sets: sizes, answers, GPQA's shuffled choices, the held-out split."""

from __future__ import annotations

from tether.cloud.data import qa


def test_sets_load_with_reference_answers() -> None:
    gsm = qa.load("gsm8k", "all")
    assert len(gsm) == 1319 and gsm[0].answer == "18" and gsm[0].rationale.endswith("#### 18")
    assert all(it.answer.lstrip("-").replace(".", "").isdigit() for it in gsm)
    aime = qa.load("aime2025", "all")
    assert len(aime) == 30 and aime[0].answer == "70"
    gpqa = qa.load("gpqa", "all")
    assert len(gpqa) == 198 and all(len(it.choices) == 4 and it.answer in "ABCD" for it in gpqa)
    assert len({it.answer for it in gpqa}) == 4  # the correct option is not always first
    assert "\nA) " in gpqa[0].prompt() and "\nD) " in gpqa[0].prompt()


def test_held_out_split_is_disjoint_and_complete() -> None:
    for name in qa.DATASETS:
        test, val, everything = qa.load(name, "test"), qa.load(name, "val"), qa.load(name, "all")
        assert not {it.id for it in test} & {it.id for it in val}
        assert len(test) + len(val) == len(everything)
    assert 100 < len(qa.load("gsm8k", "val")) < 170


def test_extract_number() -> None:
    assert qa.extract_number("so the total is 1,234.5.") == "1234.5"
    assert qa.extract_number("work 12 then #### 72") == "72"
    assert qa.extract_number("no digits here") is None
