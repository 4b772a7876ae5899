"""Dual-state against single-state, one layer at a time: `python -m tether.bench.dsla._states`.

The chain ablation in `tether bench dsla` compares whole chains distilled on a GPU; this asks the
narrower question on a CPU: converted alone, at equal training, does a layer with two states (with
or without the gate-separation loss) match the teacher better than one with one state? Per layer
and variant, a fresh layer is distilled as the chain's first step (`Distiller` with fixed steps: the
same layer-local and end-to-end steps for every variant, same bank, same seed) and scored on held-out
windows longer than it was trained on:

- KL(teacher || model) in nats per token with only that layer converted (the `tether dsla order` cost);
- the layer's own relative error: MSE of its output against the teacher layer's, over the teacher's
  mean square, on the teacher's input to the layer.

Variants: `dsla`, `dsla+sep` (gate-separation loss 0.1), `gla` (one state) by default; `dsla+hist4`,
`dsla+hist6`, `gla+hist4` start the first state's gate biases at 4 or 6, `dsla+rec2` and `dsla+rec4`
the second state's at -2 or -4 (a short memory), `dsla+hist2+rec2` both, and `gla+short4` starts the one
state of GLA with that short memory (GLA's second try, for a fair best-of-two against DSLA's);
`dsla+short4` starts both states of DSLA so, `dsla+short4+rec8` its recency state shorter still (`--variants`).
`--seed` changes the training batches' draw and the new weights' initialisation, for a second try at the
same start.

Writes one JSON under <artefacts>/dsla/states/ and prints a table. Quality only: timings do not
enter, so a busy machine changes nothing but the wall time.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tether.bench.dsla._quality import windows as held_out_windows
from tether.cloud.dsla import corpus
from tether.cloud.dsla.chain import Chain
from tether.cloud.dsla.distill import DistillConfig, Distiller
from tether.cloud.lm.attention import rope_tables
from tether.cloud.lm.checkpoint import load_checkpoint
from tether.cloud.lm.model import Transformer
from tether.settings import settings

VARIANTS = {  # name: (states, gate separation, history bias, recency bias)
    "dsla": (2, 0.0, 0.0, 0.0),
    "dsla+sep": (2, 0.1, 0.0, 0.0),
    "gla": (1, 0.0, 0.0, 0.0),
    "dsla+hist4": (2, 0.0, 4.0, 0.0),
    "dsla+hist6": (2, 0.0, 6.0, 0.0),
    "gla+hist4": (1, 0.0, 4.0, 0.0),
    "gla+short4": (1, 0.0, -4.0, 0.0),
    "dsla+short4": (2, 0.0, -4.0, -4.0),
    "dsla+short4+rec8": (2, 0.0, -4.0, -8.0),
    "dsla+rec2": (2, 0.0, 0.0, -2.0),
    "dsla+rec4": (2, 0.0, 0.0, -4.0),
    "dsla+hist2+rec2": (2, 0.0, 2.0, -2.0),
}


@torch.no_grad()
def _teacher_pass(model: Transformer, wins: torch.Tensor, layers: list[int]) -> list[dict]:
    """Per window: the teacher's log-probabilities and, per layer, its input to the attention and output."""
    out = []
    for w in wins:
        T = w.shape[0]
        cos, sin = rope_tables(torch.arange(T), model.inv_freq)
        x = model.tok_emb(w[None])
        per_layer = {}
        for j, block in enumerate(model.layers):
            if j in layers:
                a_in = block.attn_norm(x)
                per_layer[j] = (a_in, block.attn.impl("softmax").forward_dense(a_in, cos, sin))
            x = block(x, cos, sin)
        logp = F.log_softmax(F.linear(model.norm(x[0]), model.output_weight).float(), -1)
        out.append({"logp": logp, "neg_entropy": (logp.exp() * logp).sum(-1), "layers": per_layer})
    return out


@torch.no_grad()
def _score(model: Transformer, layer: int, kind: str, wins: torch.Tensor, teacher: list[dict]) -> dict:
    for slot in model.slots:
        slot.active = "softmax"
    model.slots[layer].active = kind
    impl = model.slots[layer].impl(kind)
    kl, rel = [], []
    for w, t in zip(wins, teacher, strict=True):
        T = w.shape[0]
        cos, sin = rope_tables(torch.arange(T), model.inv_freq)
        logq = F.log_softmax(model(w[None])[0].float(), -1)
        kl.append(float((t["neg_entropy"] - (t["logp"].exp() * logq).sum(-1)).mean()))
        a_in, target = t["layers"][layer]
        y = impl.forward_dense(a_in, cos, sin)
        rel.append(float(F.mse_loss(y, target) / target.pow(2).mean()))
    model.slots[layer].active = "softmax"
    return {"kl": float(np.mean(kl)), "rel_mse": float(np.mean(rel)), "kl_windows": kl}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", default="25,6,13,20", help="layers to convert, one at a time")
    ap.add_argument("--variants", default="dsla,dsla+sep,gla")
    ap.add_argument("--local-steps", type=int, default=300)
    ap.add_argument("--e2e-steps", type=int, default=10)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--eval-len", type=int, default=2048)
    ap.add_argument("--eval-windows", type=int, default=3, help="per held-out text")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0, help="the distillation's seed (batches, new weights)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    layers = [int(x) for x in args.layers.split(",")]
    variants = args.variants.split(",")
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        raise SystemExit(f"--variants takes some of {','.join(VARIANTS)}, but got {sorted(unknown)}")

    t0 = time.perf_counter()
    ckpt = load_checkpoint()
    tok = ckpt.tokenizer
    train = corpus.tokens(tok, "train", lambda: corpus.train_text(tok))
    val = corpus.tokens(tok, "sharegpt-val", corpus.heldout_texts(tok)["sharegpt-val"])
    texts = corpus.heldout_texts(tok)
    wins = torch.cat(
        [
            held_out_windows(corpus.tokens(tok, name, texts[name]), args.eval_windows, args.eval_len, seed=11)
            for name in ("shakespeare-val", "python-docs")
        ]
    )
    teacher_model = Transformer.from_checkpoint(ckpt)
    teacher = _teacher_pass(teacher_model, wins, layers)
    del teacher_model
    print(
        f"teacher pass over {len(wins)} x {args.eval_len} tokens in {time.perf_counter() - t0:.0f} s",
        flush=True,
    )

    results: dict[str, dict[str, dict]] = {}
    for layer in layers:
        for name in variants:
            states, sep, hist, rec = VARIANTS[name]
            t1 = time.perf_counter()
            torch.manual_seed(args.seed)  # the second state's gate weights start at nn.Linear's random init
            model = Transformer.from_checkpoint(ckpt)
            order = [layer, *(j for j in range(model.config.n_layer) if j != layer)]
            with tempfile.TemporaryDirectory() as tmp:
                chain = Chain.create(
                    Path(tmp) / "c", teacher=ckpt.name, n_layer=model.config.n_layer, n_states=states,
                    order=order, entropy=[0.0] * model.config.n_layer, settings={},
                )  # fmt: skip
                cfg = DistillConfig(
                    n_states=states,
                    gate_separation=sep,
                    history_bias=hist,
                    recency_bias=rec,
                    seq_len=args.seq_len,
                    batch_size=4,
                    e2e_batch_size=2,
                    bank_batches=8,
                    max_layers=1,
                    budget_min=10**5,
                    seed=args.seed,
                )
                distiller = Distiller(
                    model, chain, cfg, train, val, log=lambda _: None,
                    fixed_steps={layer: (args.local_steps, args.e2e_steps)},
                )  # fmt: skip
                [step] = distiller.run()
                kind = chain.kind
            score = _score(model, layer, kind, wins, teacher)
            score["train_seconds"] = step.seconds
            score["local_loss_end"] = step.local_loss[-1][1] if step.local_loss else None
            results.setdefault(str(layer), {})[name] = score
            print(
                f"layer {layer:2d} {name:9s} KL {score['kl']:.4f} nats/token, layer rel. MSE "
                f"{score['rel_mse']:.4f} ({time.perf_counter() - t1:.0f} s)",
                flush=True,
            )

    out = settings().artefact_dir("dsla", "states") / f"states-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "results": results}, indent=1))
    print(f"\n| layer | {' | '.join(f'{v}: KL / rel. MSE' for v in variants)} |")
    print(f"|---|{'---|' * len(variants)}")
    for layer, per in results.items():
        cells = " | ".join(f"{per[v]['kl']:.4f} / {per[v]['rel_mse']:.3f}" for v in variants)
        print(f"| {layer} | {cells} |")
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
