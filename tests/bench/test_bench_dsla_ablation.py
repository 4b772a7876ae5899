"""`tether bench dsla`'s single-state chain: which one pairs with the DSLA chain at the chosen level, and
the settings one is made with when none does."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from tiny_lm import TINY

from tether import settings as settings_mod
from tether.bench import BenchContext
from tether.bench.dsla import Setup, _load_ablation
from tether.cloud.dsla.chain import Chain
from tether.cloud.dsla.cli import chains_root
from tether.cloud.dsla.distill import DistillConfig, Distiller, config_dict, single_state_config
from tether.cloud.lm import Transformer

ORDER = [2, 0, 1]
CFG = DistillConfig(
    batch_size=2, seq_len=16, bank_batches=1, local_steps=3, e2e_steps=1, e2e_batch_size=1, budget_min=10
)


def test_the_single_state_config_is_the_chains_own_for_one_state() -> None:
    dual = DistillConfig(
        seq_len=1024,
        batch_size=8,
        e2e_batch_size=8,
        history_bias=-4,
        recency_bias=-8,
        gate_separation=0.1,
        device="cuda",
        seed=3,
        budget_min=7.8,
        local_steps=100000,
    )
    one = single_state_config(config_dict(dual) | {"sources": ["x"], "train_tokens": 5}, 20)
    assert (one.n_states, one.recency_bias, one.gate_separation, one.max_layers) == (1, 0.0, 0.0, 20)
    assert (one.seq_len, one.batch_size, one.e2e_batch_size, one.history_bias) == (1024, 8, 8, -4)
    assert (one.device, one.seed, one.local_steps) == ("cuda", 3, 100000)
    assert one.budget_min >= 1e6  # --steps-from sets the steps; the budget must not cut them


@pytest.fixture
def chains(tmp_path, monkeypatch):
    monkeypatch.setenv("TETHER_ARTEFACTS", str(tmp_path / "artefacts"))
    monkeypatch.setattr(settings_mod, "_current", None)

    def distil(name: str, n_states: int, layers: int, order: list[int] = ORDER) -> Chain:
        cfg = replace(CFG, n_states=n_states, max_layers=layers)
        chain = Chain.create(
            chains_root() / name,
            teacher="tiny",
            n_layer=3,
            n_states=n_states,
            order=order,
            entropy=[0.0] * 3,
            settings=config_dict(cfg),
        )
        tokens = np.random.default_rng(0).integers(3, 259, 2000).astype(np.int32)
        Distiller(
            Transformer.random(TINY, seed=0), chain, cfg, tokens, tokens[:500], log=lambda _: None
        ).run()
        return chain

    distil("tiny-dsla", 2, 2)
    return distil


def _setup(chosen: int) -> Setup:
    model = Transformer.random(TINY, seed=0)
    return Setup(
        model=model,
        tokenizer=None,
        order=ORDER,
        kind="dsla",
        available=2,
        ablation=0,
        texts={},
        raw_texts={},
        contexts=[],
        batches=[],
        steps=1,
        ppl_long=1,
        ppl_short=1,
        cloze_per_repeat=1,
        load_prompts=1,
        load_prompt_len=1,
        load_max_tokens=1,
        chosen=chosen,
        abl_order=ORDER,
        teacher="tiny",
        chain_name="tiny-dsla",
    )


def _ctx(**options: str) -> BenchContext:
    return BenchContext(system="dsla", options=dict(options))


def test_the_chain_made_for_the_lowest_level_at_or_above_the_chosen_one_is_loaded(chains) -> None:
    chains("tiny-gla-gpu2", 1, 2, order=[0, 1, 2])  # another order: never paired
    chains("tiny-gla-cpu1", 1, 1)
    made_for_2 = chains("tiny-gla-cpu2", 1, 2)

    s = _setup(chosen=2)
    _load_ablation(_ctx(), s)
    assert s.ablation == 2 and any("tiny-gla-gpu2 has another order" in n for n in s.notes)
    assert any("tiny-gla-cpu2 (2 layers" in n for n in s.notes)
    stored = load_file(str(made_for_2.folder / "layer_2.safetensors"))
    loaded = s.model.slots[2].impl("gla").state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in stored.items())

    s = _setup(chosen=1)
    _load_ablation(_ctx(), s)
    assert s.ablation == 1 and any("tiny-gla-cpu1 (1 layers" in n for n in s.notes)


def test_with_none_that_fits_the_bench_says_how_to_make_it_when_it_may_not(chains) -> None:
    chains("tiny-gla-cpu1", 1, 1)  # made for a lower level: not a candidate for 2

    s = _setup(chosen=2)
    _load_ablation(_ctx(make="no"), s)
    assert s.ablation == 0 and not Chain.exists(chains_root() / "tiny-gla-cpu2")
    assert any(
        "--steps-from tiny-dsla --order 2,0,1 --max-layers 2 --name tiny-gla-cpu2" in n for n in s.notes
    )

    # A DSLA chain distilled on a GPU pairs with one made on a GPU; this machine (and CI's) has none.
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the bench would distil the real model's single-state chain on it")
    manifest = chains_root() / "tiny-dsla" / "manifest.json"
    data = json.loads(manifest.read_text())
    data["settings"]["device"] = "cuda"
    manifest.write_text(json.dumps(data))
    s = _setup(chosen=2)
    _load_ablation(_ctx(), s)
    assert s.ablation == 0 and any(
        "tiny-dsla was distilled on a GPU" in n and "tiny-gla-gpu2" in n for n in s.notes
    )
