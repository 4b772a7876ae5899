"""The DSLA benchmark's quality figures against the model's own forward: perplexity and cloze choices
(cloze runs each item's context once and continues it with every option)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tether.bench.dsla._quality import ClozeItem, cloze_accuracy, cloze_items, cloze_scores, score_windows
from tether.cloud.dsla.chain import attach
from tether.cloud.dsla.layer import kind_name
from tether.cloud.lm import ModelConfig, Tokenizer, Transformer

TINY = ModelConfig(
    vocab_size=259,
    n_layer=2,
    n_embd=32,
    n_head=4,
    n_kv_head=2,
    head_dim=8,
    ffn_dim=64,
    context_len=256,
    tie_embeddings=False,
)


@torch.no_grad()
def _reference_scores(model: Transformer, item: ClozeItem) -> list[float]:
    """Each option's log-likelihood from the full logits of every position."""
    scores = []
    for o in item.options:
        seq = torch.tensor([item.context + o])
        logp = F.log_softmax(model(seq)[0, :-1], -1)
        pos = torch.arange(len(item.context) - 1, len(item.context) - 1 + len(o))
        scores.append(float(logp[pos, torch.tensor(o)].sum()))
    return scores


@pytest.mark.parametrize("converted", [0, 1, 2])  # layer 0 converted to one or two linear states
def test_cloze_scores_are_each_options_log_likelihood_after_the_context(converted: int):
    model = Transformer.random(TINY, seed=3)
    if converted:
        attach(model, n_states=converted)
        model.slots[0].active = kind_name(converted)
    gen = torch.Generator().manual_seed(0)
    for _ in range(4):
        context = torch.randint(3, 259, (12,), generator=gen).tolist()
        # Options of different lengths, so padding must not enter a score.
        options = [torch.randint(3, 259, (int(n),), generator=gen).tolist() for n in (2, 5, 3, 4)]
        item = ClozeItem(context, options, 0)
        ref = _reference_scores(model, item)
        assert cloze_scores(model, item) == pytest.approx(ref, abs=1e-3)
        best = max(range(4), key=ref.__getitem__)
        assert cloze_accuracy(model, [ClozeItem(context, options, best)]) == 1.0
        assert cloze_accuracy(model, [ClozeItem(context, options, (best + 1) % 4)]) == 0.0


@torch.no_grad()
def test_window_perplexity_is_the_models_next_token_loss():
    model = Transformer.random(TINY, seed=4)
    wins = torch.randint(3, 259, (2, 40), generator=torch.Generator().manual_seed(1))
    ppls, tops, agree, _ = score_windows(model, wins, slice_len=16)  # slices of the output projection
    for w, ppl, top in zip(wins, ppls, tops, strict=True):
        logits = model(w[None])[0, :-1]
        assert math.isclose(ppl, math.exp(float(F.cross_entropy(logits, w[1:]))), rel_tol=1e-4)
        assert torch.equal(top, logits.argmax(-1))
    assert agree == []  # no teacher given
    _, _, agree, _ = score_windows(model, wins, teacher_top1=tops)
    assert agree == [1.0, 1.0]


def test_cloze_items_blank_a_word_of_the_sentence_among_three_distractors():
    text = (
        "The morning train left the station slowly while the porters waved their caps. "
        "Every passenger watched the harbour lights fade behind the northern hills. "
        "A quiet conductor counted tickets and whistled an old tune from the valley. "
    ) * 8
    tok = Tokenizer.byte_level()
    items = cloze_items(text, tok, 5, seed=2, context_chars=80)
    assert len(items) == 5
    for item in items:
        assert len(item.options) == 4 and 0 <= item.answer < 4
        words = [tok.decode(o).split()[0] for o in item.options]
        assert len(set(words)) == 4  # four different candidates
        assert tok.decode(item.context + item.options[item.answer]) in text  # the true option restores it
