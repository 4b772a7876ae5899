"""The measured serving order: each distilled layer's cost, the cheapest served first, and what it changes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from dsla_tiny import TINY, TINY_DISTILL, random_tokens

from tether.cloud.dsla.chain import Chain, ChainError
from tether.cloud.dsla.distill import DistillConfig, Distiller, check_resume_data, config_dict, resume_config
from tether.cloud.dsla.sensitivity import conversion_costs, leading_order, measured_order
from tether.cloud.lm import Transformer

CFG = DistillConfig(**{**TINY_DISTILL.__dict__, "local_steps": 4, "e2e_steps": 1})
_tokens = random_tokens


def _chain(tmp_path, max_layers: int) -> tuple[Transformer, Chain]:
    teacher = Transformer.random(TINY, seed=0)
    chain = Chain.create(
        tmp_path / "chain",
        teacher="tiny",
        n_layer=3,
        n_states=2,
        order=[2, 0, 1],
        entropy=[0.0] * 3,
        settings={},
    )
    cfg = DistillConfig(**{**CFG.__dict__, "max_layers": max_layers})
    Distiller(teacher, chain, cfg, _tokens(2), _tokens(3), log=lambda _: None).run()
    return teacher, chain


def test_costs_are_the_kl_from_the_teacher_and_leave_the_model_as_it_was(tmp_path) -> None:
    model, chain = _chain(tmp_path, 3)
    windows = torch.from_numpy(_tokens(4)[:96].astype(np.int64)).view(3, 32)
    before = [slot.active for slot in model.slots]
    seen: list[int] = []
    costs = conversion_costs(
        model, "dsla", chain.converted, windows, progress=lambda layer, _: seen.append(layer)
    )
    assert seen == chain.converted and sorted(costs) == [0, 1, 2]
    assert all(c > 1e-6 for c in costs.values())  # a converted layer changes the next-token distribution
    assert [slot.active for slot in model.slots] == before
    # Against itself the teacher costs nothing: the KL compares with the all-softmax model.
    same = conversion_costs(model, "softmax", [0, 1], windows)
    assert same == pytest.approx({0: 0.0, 1: 0.0}, abs=1e-6)
    # One layer's cost, by hand: KL(teacher || model with that layer alone converted), per token.
    for slot in model.slots:
        slot.active = "softmax"
    with torch.no_grad():
        t = torch.log_softmax(model(windows), -1)
        model.slots[1].active = "dsla"
        s = torch.log_softmax(model(windows), -1)
    model.slots[1].active = "softmax"
    assert costs[1] == pytest.approx(float((t.exp() * (t - s)).sum(-1).mean()), rel=1e-4)


def test_serving_order_is_by_measured_cost_and_every_loader_follows_it(tmp_path) -> None:
    model, chain = _chain(tmp_path, 2)  # layers 2 and 0 converted, 1 not yet
    assert chain.serving_order == [2, 0] and chain.full_order == [2, 0, 1]
    order = chain.set_measured_order({2: 0.5, 0: 0.1}, {"metric": "kl_nats_per_token", "windows": 3})
    assert order == [0, 2] == measured_order({2: 0.5, 0: 0.1})
    reopened = Chain.open(tmp_path / "chain")
    manifest = json.loads((tmp_path / "chain" / "manifest.json").read_text())
    assert manifest["measured_order"]["cost"] == {"0": 0.1, "2": 0.5} and manifest["order"] == [2, 0, 1]
    assert reopened.serving_order == [0, 2] and reopened.full_order == [0, 2, 1]
    assert reopened.converted == [2, 0]  # the chain itself is unchanged

    # Loading a prefix activates the cheapest layers, not the chain's first.
    fresh = Transformer.random(TINY, seed=0)
    assert reopened.load_into(fresh, upto=1) == [0]
    assert [slot.active for slot in fresh.slots] == ["dsla", "softmax", "softmax"]

    # Distilling on: a layer converted after the measurement is served after the measured ones.
    Distiller(
        Transformer.random(TINY, seed=0),
        reopened,
        DistillConfig(**{**CFG.__dict__, "max_layers": 3}),
        _tokens(2),
        _tokens(3),
        log=lambda _: None,
    ).run()
    assert reopened.converted == [2, 0, 1] and reopened.serving_order == [0, 2, 1]

    with pytest.raises(ChainError, match=r"layers \[5\] are not converted"):
        reopened.set_measured_order({0: 0.1, 5: 0.2}, {})
    reopened.clear_measured_order()
    assert Chain.open(tmp_path / "chain").serving_order == [2, 0, 1]


def test_a_given_order_leads_and_the_rest_follow_by_entropy_and_bad_lists_are_rejected() -> None:
    entropy = [0.5, 0.1, 0.9, 0.3, 0.2]  # sensitivity order: 1, 4, 3, 0, 2
    assert leading_order([2, 0], entropy) == [2, 0, 1, 4, 3]
    assert leading_order([], entropy) == [1, 4, 3, 0, 2]
    with pytest.raises(ValueError, match=r"0 <= layer < 5, but got \[5\]"):
        leading_order([1, 5], entropy)
    with pytest.raises(ValueError, match=r"\[3\] repeat"):
        leading_order([3, 1, 3], entropy)


def test_reorder_changes_only_the_layers_not_yet_converted(tmp_path) -> None:
    _, chain = _chain(tmp_path, max_layers=1)  # order [2, 0, 1], layer 2 converted
    assert chain.reorder([2]) is False and chain.reorder([2, 0]) is False  # the order it has
    assert chain.reorder([2, 1]) is True
    assert chain.order == [2, 1, 0] and Chain.open(chain.folder).order == [2, 1, 0]  # written
    with pytest.raises(ChainError, match=r"disagrees with the layers .* has converted, \[2\]"):
        chain.reorder([1, 2])
    with pytest.raises(ChainError, match=r"the order \[2, 1, 1\]: .*\[1\] repeat"):
        chain.reorder([2, 1, 1])
    assert chain.order == [2, 1, 0] and chain.converted == [2]


def _cli_chain(tmp_path, monkeypatch, name: str, settings: dict) -> tuple[Path, list[str]]:
    """A chain of the real embedded model with one converted layer, in an artefacts folder of its
    own, and `tether dsla distill` arguments that resume it with --max-layers 1, so nothing trains."""
    from tether import settings as settings_mod
    from tether.cloud.dsla.chain import ChainStep, attach
    from tether.cloud.lm import load_checkpoint

    monkeypatch.setenv("TETHER_ARTEFACTS", str(tmp_path / "artefacts"))
    monkeypatch.setattr(settings_mod, "_current", None)
    ckpt = load_checkpoint()
    folder = settings_mod.settings().artefact_dir("dsla", "chains") / name
    chain = Chain.create(
        folder,
        teacher=ckpt.name,
        n_layer=30,
        n_states=2,
        order=list(range(30)),
        entropy=[0.0] * 30,
        settings=settings,
    )
    chain.add_step(0, attach(Transformer.from_checkpoint(ckpt))[0], ChainStep(0, 0, 0, 0.0))
    tokens = tmp_path / "t.npz"
    np.savez(
        tokens, train=np.arange(5000, dtype=np.uint16), val=np.arange(600, dtype=np.uint16), sources=["x"]
    )
    return folder, ["distill", "--name", name, "--tokens", str(tokens), "--max-layers", "1", "--threads", "1"]


def test_distill_resumes_in_a_new_order_only_where_it_keeps_the_converted_layers(
    tmp_path, monkeypatch
) -> None:
    from typer.testing import CliRunner

    from tether.cloud.dsla.cli import app

    folder, args = _cli_chain(tmp_path, monkeypatch, "mine", {})
    args += ["--budget-min", "0.01", "--bank-batches", "1", "--batch-size", "1", "--seq-len", "16"]
    args += ["--e2e-batch-size", "1"]

    refused = CliRunner().invoke(app, [*args, "--order", "5,3"])
    assert refused.exit_code != 0 and "has converted, [0]" in refused.output and "--fresh" in refused.output
    assert Chain.open(folder).order == list(range(30))
    resumed = CliRunner().invoke(app, [*args, "--order", "0,5,3"])
    assert resumed.exit_code == 0, resumed.output
    after = Chain.open(folder)
    assert after.order[:3] == [0, 5, 3] and sorted(after.order) == list(range(30))
    assert after.converted == [0]
    both = CliRunner().invoke(app, [*args, "--order", "0,1", "--order-from", "other"])
    assert both.exit_code != 0 and "give one of them" in both.output


def test_resume_config_keeps_the_chains_settings_and_names_each_clash() -> None:
    made = config_dict(DistillConfig(seq_len=16, history_bias=-4.0, recency_bias=-8.0, seed=1))
    made.pop("lr_min")  # a chain made before that setting existed did not record it
    run = DistillConfig(lr_min=0.5, max_layers=20, device="cuda", precision="tf32", budget_min=30.0)
    resumed = resume_config(run, made, given={"max_layers", "device"})
    # Every setting that shapes the layers comes from the chain; the run's own ones stay.
    want = {"seq_len": 16, "history_bias": -4.0, "recency_bias": -8.0, "seed": 1}
    want |= {"max_layers": 20, "device": "cuda", "precision": "tf32", "budget_min": 30.0}
    assert {k: getattr(resumed, k) for k in want} == want
    assert resumed.lr_min == 0.5  # not recorded: the run's value
    # A setting the caller chose that differs from the chain's is refused, naming both values.
    with pytest.raises(ValueError, match=r"n_states=2 \(this run: 1\), seq_len=16 \(this run: 256\)"):
        resume_config(DistillConfig(n_states=1), made, given={"n_states", "seq_len", "budget_min"})
    assert resume_config(DistillConfig(seq_len=16), made, given={"seq_len"}).recency_bias == -8.0
    with pytest.raises(ValueError, match=r"seed=1 \(this run: 0\)"):  # given None: every setting chosen
        resume_config(DistillConfig(seq_len=16, history_bias=-4.0, recency_bias=-8.0), made)


def _unboxed(output: str) -> str:
    """A command's output unwrapped from rich's error box, as one line."""
    return " ".join(re.sub("[│╭╮╰╯─]", " ", output).split())


def test_distill_resumes_a_chain_with_its_own_settings_through_the_cli(tmp_path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from tether.cloud.dsla.cli import app

    made = DistillConfig(seq_len=16, batch_size=1, e2e_batch_size=1, bank_batches=1, recency_bias=-8.0)
    data = {"sources": ["x"], "train_tokens": 5000}  # what `_cli_chain`'s tokens file holds
    folder, args = _cli_chain(tmp_path, monkeypatch, "short", config_dict(made) | data)

    # One state asked of a two-state chain: refused before anything changes, with the fix.
    refused = CliRunner().invoke(app, [*args, "--states", "1", "--seq-len", "32"])
    assert refused.exit_code != 0
    said = _unboxed(refused.output)
    assert "made with n_states=2 (this run: 1), seq_len=16 (this run: 32)" in said and "--fresh" in said
    assert Chain.open(folder).converted == [0]
    # Options left out come from the chain (the defaults would be seq_len 256, batch 4, no recency start).
    resumed = CliRunner().invoke(app, [*args, "--budget-min", "0.01", "--seq-len", "16"])
    assert resumed.exit_code == 0, resumed.output
    assert "the chain's own settings:" in resumed.output
    for setting in ("batch_size=1", "bank_batches=1", "recency_bias=-8.0"):
        assert setting in resumed.output
    assert "seq_len=16" not in resumed.output.split("the chain's own settings:")[1].splitlines()[0]
    # Other tokens than the chain's are refused too, naming both, before anything changes.
    other = tmp_path / "other.npz"
    np.savez(
        other, train=np.arange(4000, dtype=np.uint16), val=np.arange(600, dtype=np.uint16), sources=["y"]
    )
    at = args.index("--tokens") + 1
    moved = CliRunner().invoke(app, [*args[:at], str(other), *args[at + 1 :], "--budget-min", "0.01"])
    assert moved.exit_code != 0
    said = _unboxed(moved.output)
    assert "made with sources ['x'] (this run: ['y']), 5000 training tokens (this run: 4000)" in said
    assert "--tokens" in said and Chain.open(folder).converted == [0]


def test_check_resume_data_names_what_differs_and_passes_chains_that_recorded_none() -> None:
    made = {"sources": ["shakespeare", "sharegpt"], "train_tokens": 100}
    check_resume_data(made, ["shakespeare", "sharegpt"], 100)
    check_resume_data({}, ["anything"], 7)  # made before the tokens were recorded
    with pytest.raises(
        ValueError, match=r"sources \['shakespeare', 'sharegpt'\] \(this run: \['sharegpt'\]\)$"
    ):
        check_resume_data(made, ["sharegpt"], 100)
    with pytest.raises(ValueError, match=r"made with 100 training tokens \(this run: 99\)$"):
        check_resume_data(made, ("shakespeare", "sharegpt"), 99)
