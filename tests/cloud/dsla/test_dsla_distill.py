"""Chained distillation on a tiny random model: sensitivity order, one checkpoint per step, frozen prefixes, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from dsla_tiny import TINY, TINY_DISTILL, random_tokens

from tether.cloud.dsla.chain import Chain, ChainError
from tether.cloud.dsla.distill import DistillConfig, Distiller
from tether.cloud.dsla.sensitivity import last_row_entropy, sensitivity_order
from tether.cloud.lm import Transformer

CFG = TINY_DISTILL
_tokens = random_tokens


def test_chain_converts_in_sensitivity_order_saves_each_step_and_resumes(tmp_path) -> None:
    teacher = Transformer.random(TINY, seed=0)
    windows = torch.from_numpy(_tokens(1)[:96].astype(np.int64)).view(3, 32)
    entropy = last_row_entropy(teacher, windows)
    order = sensitivity_order(entropy)
    assert sorted(order) == [0, 1, 2] and [entropy[i] for i in order] == sorted(entropy)
    assert all(0 < e <= np.log(32) + 1e-6 for e in entropy)  # an entropy over 32 positions

    folder = tmp_path / "chain"
    chain = Chain.create(
        folder, teacher="tiny", n_layer=3, n_states=2, order=order, entropy=entropy, settings={}
    )
    steps = Distiller(teacher, chain, CFG, _tokens(2), _tokens(3), log=lambda _: None).run()
    assert [s.layer for s in steps] == order[:2] and chain.converted == order[:2]
    for s in steps:
        assert (folder / f"layer_{s.layer}.safetensors").is_file()
        assert s.local_steps == CFG.local_steps and s.e2e_steps == CFG.e2e_steps
        assert all(np.isfinite(loss) for _, loss in s.local_loss + s.e2e_loss) and s.val_ppl > 1
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["order"] == order and manifest["entropy"] == pytest.approx(entropy)

    # Prefix 1 of the chain: only the first layer is DSLA, with the weights it was saved with;
    # prefix 2 holds the same weights for it (later steps never touch earlier layers).
    one, two = Transformer.random(TINY, seed=0), Transformer.random(TINY, seed=0)
    assert Chain.open(folder).load_into(one, upto=1) == order[:1]
    Chain.open(folder).load_into(two)
    assert [s.active for s in one.slots].count("dsla") == 1 and one.slots[order[0]].active == "dsla"
    assert [s.active for s in two.slots].count("dsla") == 2
    first_one, first_two = one.slots[order[0]].impl("dsla"), two.slots[order[0]].impl("dsla")
    for name, p in first_one.state_dict().items():
        torch.testing.assert_close(p, first_two.state_dict()[name])
    # Trained: the converted layer moved away from its initialisation (q was at least rescaled).
    assert not torch.equal(first_one.wq, one.slots[order[0]].impl("softmax").projections()[0])
    x = torch.randint(3, 259, (1, 20))
    assert not torch.allclose(one(x), teacher(x))

    # Resume: a new process (model) continues the chain where it stopped.
    again = Transformer.random(TINY, seed=0)
    resumed = Chain.open(folder)
    more = Distiller(
        again,
        resumed,
        DistillConfig(**{**CFG.__dict__, "max_layers": 3}),
        _tokens(2),
        _tokens(3),
        log=lambda _: None,
    ).run()
    assert [s.layer for s in more] == order[2:] and resumed.converted == order
    with pytest.raises(ChainError, match="distilled from 'tiny'"):
        resumed.check_teacher("another-model")


def test_chain_saved_in_bfloat16_loads_as_the_rounded_float32_weights_and_bad_settings_are_rejected(
    tmp_path,
) -> None:
    teacher = Transformer.random(TINY, seed=0)
    folder = tmp_path / "bf16"
    cfg = DistillConfig(
        **{**CFG.__dict__, "max_layers": 1, "save_dtype": "bfloat16", "precision": "bf16", "warmup": 3}
    )
    chain = Chain.create(
        folder,
        teacher="tiny",
        n_layer=3,
        n_states=2,
        order=[1, 0, 2],
        entropy=[0.0] * 3,
        settings={"save_dtype": "bfloat16"},
    )
    [step] = Distiller(teacher, chain, cfg, _tokens(2), _tokens(3), log=lambda _: None).run()
    trained = {k: v.detach().clone() for k, v in teacher.slots[1].impl("dsla").state_dict().items()}
    from safetensors.torch import load_file

    stored = load_file(str(folder / "layer_1.safetensors"))
    assert {t.dtype for t in stored.values()} == {torch.bfloat16}
    fresh = Transformer.random(TINY, seed=0)
    Chain.open(folder).load_into(fresh)
    for name, p in fresh.slots[1].impl("dsla").state_dict().items():
        assert p.dtype == torch.float32
        torch.testing.assert_close(p, trained[name].bfloat16().float(), rtol=0, atol=0)
    assert np.isfinite(step.val_ppl)
    for bad, match in (
        ({"device": "tpu"}, "device"),
        ({"precision": "fp8"}, "precision"),
        ({"save_dtype": "int8"}, "save_dtype"),
    ):
        with pytest.raises(ValueError, match=match):
            DistillConfig(**bad)


def _first_layer(folder, **over) -> tuple[Distiller, list]:
    """A tiny chain in order [1, 0, 2] with its first layer distilled under CFG with `over`: (distiller, steps)."""
    teacher = Transformer.random(TINY, seed=0)
    chain = Chain.create(
        folder, teacher="tiny", n_layer=3, n_states=2, order=[1, 0, 2], entropy=[0.0] * 3, settings={}
    )
    cfg = DistillConfig(**{**CFG.__dict__, "max_layers": 1, **over})
    distiller = Distiller(teacher, chain, cfg, _tokens(2), _tokens(3), log=lambda _: None)
    return distiller, distiller.run()


def _layer_1_input(distiller: Distiller) -> torch.Tensor:
    """The teacher's (normalised) input to layer 1 on the first bank batch."""
    return distiller.model.layers[1].attn_norm(distiller.bank.teacher[0][1].float())


def test_end_to_end_loss_weights_and_a_fresh_optimiser_per_phase(tmp_path) -> None:
    """ce_weight=0 with alpha = beta = 0 leaves nothing to learn end to end (loss exactly 0); with
    ce_weight=1 the loss is the corpus cross-entropy (> 0). The recipe of
    the 8K GPU run (fresh Adam, its own warm-up, cosine decay, scaled rates) trains with finite losses."""

    def run(name: str, **over) -> tuple[list, Transformer]:
        distiller, steps = _first_layer(tmp_path / name, **over)
        return steps, distiller.model

    [silent], _ = run("silent", ce_weight=0.0, alpha=0.0, beta=0.0, e2e_fresh_adam=True, e2e_warmup=1)
    assert silent.e2e_steps == CFG.e2e_steps and all(loss == 0.0 for _, loss in silent.e2e_loss)
    [with_ce], _ = run("ce", ce_weight=1.0, alpha=0.0, beta=0.0)
    assert all(loss > 1.0 for _, loss in with_ce.e2e_loss)  # byte-level CE of a random model: ~log(259)
    [recipe], _ = run(
        "recipe", ce_weight=0.0, e2e_fresh_adam=True, e2e_warmup=1, e2e_lr_scale=0.5, lr_min=0.1
    )
    assert all(np.isfinite(loss) for _, loss in recipe.local_loss + recipe.e2e_loss)
    assert recipe.local_steps == CFG.local_steps and np.isfinite(recipe.val_ppl)
    for bad in ({"lr_min": 1.5}, {"e2e_lr_scale": -1.0}, {"ce_weight": -0.1}):
        with pytest.raises(ValueError, match=f"{next(iter(bad))} must satisfy"):
            DistillConfig(**bad)


def test_gate_separation_pushes_the_two_states_gates_apart(tmp_path) -> None:
    """Trained at equal steps from the same start, a layer with the separation loss ends with less similar
    history and recency gates than one without; the single-state ablation refuses the loss."""

    def similarity(gamma: float) -> float:
        distiller, _ = _first_layer(tmp_path / f"sep{gamma}", local_steps=30, gate_separation=gamma)
        with torch.no_grad():
            return float(distiller.impls[1].gate_similarity(_layer_1_input(distiller)))

    without, with_loss = similarity(0.0), similarity(1.0)
    assert 0.0 <= with_loss < without - 0.05, (without, with_loss)
    with pytest.raises(ValueError, match="gate_separation=0"):
        DistillConfig(n_states=1, gate_separation=0.1)
    with pytest.raises(ValueError, match="gate_separation must satisfy"):
        DistillConfig(gate_separation=-1.0)


def _forget_rates(distiller) -> torch.Tensor:
    """-mean log g of each of layer 1's two states on its input: (2,), larger forgets faster."""
    impl = distiller.impls[1]
    with torch.no_grad():
        log_g = impl.gates(_layer_1_input(distiller)).unflatten(-2, (2, TINY.n_head))
    return -log_g.mean(dim=(0, 1, -2, -1))


def test_history_bias_starts_the_first_state_with_a_long_memory(tmp_path) -> None:
    """history_bias sets the first state's gate biases before training (the second keeps the reference's 0):
    its gates then sit far closer to 1 than the second state's."""
    distiller, _ = _first_layer(tmp_path / "hist", history_bias=5.0)
    impl = distiller.impls[1]
    hq = TINY.n_head * TINY.head_dim
    # A few steps at lr_gates move a bias by well under 1.
    assert float(impl.bg[:hq].min()) > 4.0 and float(impl.bg[hq:].abs().max()) < 1.0
    forget = _forget_rates(distiller)
    assert float(forget[0]) < 0.1 * float(forget[1]), forget


def test_recency_bias_starts_the_second_state_with_a_short_memory(tmp_path) -> None:
    """recency_bias sets the second state's gate biases before training (the first keeps the reference's 0):
    that state then forgets much faster than the first; a single-state chain refuses it."""
    distiller, _ = _first_layer(tmp_path / "rec", recency_bias=-4.0)
    impl = distiller.impls[1]
    hq = TINY.n_head * TINY.head_dim
    assert float(impl.bg[hq:].max()) < -3.0 and float(impl.bg[:hq].abs().max()) < 1.0
    forget = _forget_rates(distiller)
    assert float(forget[1]) > 3.0 * float(forget[0]), forget
    with pytest.raises(ValueError, match="recency_bias=0"):
        DistillConfig(n_states=1, recency_bias=-2.0)


def test_the_seed_makes_a_chain_reproducible(tmp_path) -> None:
    """Same seed, same chain (batches and the second state's randomly initialised gate rows alike),
    whatever torch's global generator did before; another seed, another chain."""

    def first_layer(name: str, seed: int) -> dict[str, torch.Tensor]:
        teacher = Transformer.random(TINY, seed=0)
        chain = Chain.create(
            tmp_path / name, teacher="tiny", n_layer=3, n_states=2, order=[1, 0, 2], entropy=[0.0] * 3, settings={}
        )  # fmt: skip
        cfg = DistillConfig(**{**CFG.__dict__, "max_layers": 1, "seed": seed})
        torch.rand(int(torch.randint(1, 100, ()).item()))  # the global generator left somewhere else
        Distiller(teacher, chain, cfg, _tokens(2), _tokens(3), log=lambda _: None).run()
        model = Transformer.random(TINY, seed=0)
        Chain.open(tmp_path / name).load_into(model)
        return {k: v.clone() for k, v in model.slots[1].impl("dsla").state_dict().items()}

    a, b, c = first_layer("a", 0), first_layer("b", 0), first_layer("c", 1)
    for name, p in a.items():
        torch.testing.assert_close(p, b[name], rtol=0, atol=0)
    assert not torch.equal(a["wg"], c["wg"])
