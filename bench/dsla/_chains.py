"""Quality of whole chains at one level: `python -m tether.bench.dsla._chains --level 18 CHAIN ...`.

`tether bench dsla` scores one chain (and its ablation) with speed, load and cloze beside it, about
35 minutes; this scores several chains' quality alone, on the benchmark's own held-out windows, so
recipes can be compared after a distillation run: each chain with the first `--level` layers of its
chain order converted (not a measured serving order, which differs between chains), against the
teacher on

- Shakespeare 8K: perplexity of three 8,192-token windows (the benchmark's long windows, seed 1);
- one 2,048-token window of each held-out text (Shakespeare, ShareGPT, Python docs; seed 2);
- top-1 agreement with the teacher on the 2K windows.

Writes one JSON under <artefacts>/dsla/chains-quality/ and prints a line per chain. Quality only:
a busy machine changes nothing but the wall time (about 3 minutes per chain on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from tether.bench.dsla import _quality as quality
from tether.bench.dsla._speed import set_level
from tether.cloud.dsla import corpus
from tether.cloud.dsla.chain import Chain
from tether.cloud.dsla.cli import chains_root
from tether.cloud.lm import Transformer, load_checkpoint
from tether.settings import settings


def score(model: Transformer, long_w: torch.Tensor, short_w: torch.Tensor, teacher=None) -> dict:
    """Perplexities (8K windows, 2K windows) and, given the teacher's top-1 tokens, the agreement."""
    p_long, top_long, _, _ = quality.score_windows(model, long_w)
    p_short, top_short, agree, _ = quality.score_windows(model, short_w, teacher)
    return {"long": p_long, "short": p_short, "agree_short": agree, "top_short": top_short}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("chains", nargs="+", help="chain folder names under <artefacts>/dsla/chains")
    ap.add_argument("--level", type=int, required=True, help="converted layers, a prefix of each chain order")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    ckpt = load_checkpoint()
    held = corpus.heldout_texts(ckpt.tokenizer)
    texts = {k: corpus.tokens(ckpt.tokenizer, k, f) for k, f in held.items()}
    long_w = quality.long_windows(texts, 3, 8192)
    short_w = quality.short_windows(texts, 2048)
    chains = {name: Chain.open(chains_root() / name) for name in args.chains}
    for name, chain in chains.items():
        chain.check_teacher(ckpt.name)
        if chain.num_converted < args.level:
            raise SystemExit(f"{name} has {chain.num_converted} layers; --level must be at most that")

    results: dict[str, dict] = {}
    teacher_top = None
    for name in ["teacher", *chains]:
        t0 = time.perf_counter()
        model = Transformer.from_checkpoint(ckpt)
        if name != "teacher":
            chains[name].load_into(model, activate=False)
            set_level(model, chains[name].order, args.level, chains[name].kind)
        r = score(model, long_w, short_w, teacher_top)
        if name == "teacher":
            teacher_top = r["top_short"]
        results[name] = {
            "ppl_8k": r["long"],
            "ppl_8k_median": float(np.median(r["long"])),
            "ppl_2k": dict(zip(texts, r["short"])),
            "agree_2k": float(np.mean(r["agree_short"])) if r["agree_short"] else 1.0,
        }
        base = results["teacher"]["ppl_8k_median"]
        print(
            f"{name} @ {args.level}: 8K median {results[name]['ppl_8k_median']:.2f} "
            f"({results[name]['ppl_8k_median'] / base - 1:+.1%}); 2K "
            + ", ".join(f"{k} {v:.2f}" for k, v in results[name]["ppl_2k"].items())
            + f"; top-1 agreement {results[name]['agree_2k']:.3f} ({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
    out = (
        settings().artefact_dir("dsla", "chains-quality")
        / f"level{args.level}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    )
    out.write_text(json.dumps({"level": args.level, "results": results}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
