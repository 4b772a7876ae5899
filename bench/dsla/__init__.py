"""tether bench dsla: DSLA-Serve's speed and quality against the same engine with no layer converted.

The paper (arXiv 2506.09316): 2.3x faster inference than Llama2-7B at comparable accuracy. Here,
on SmolLM2-135M and a chain distilled by `tether dsla distill`, for the original model, prefixes of
the serving order (25%, 50%, the chosen level, the furthest) and the single-state ablation (a chain
made with `--states 1 --steps-from <chain>`, compared at the chosen level). The serving order is the
chain's measured order where `tether dsla order` ran (cheapest layers first), else the chain order;
the dual-vs-single pair is always scored on the layers the two chains share (the chain order's
prefix), for quality only when the serving order converts other layers at that level:

- decode throughput and latency against context (512 .. 8K) at batch 1 and 8 (caches imported,
  then the engine's decode steps timed); the target's figure (the chosen level against the
  original at batch 8 / 8K) is measured again with the two taking turns, five repeats each, as
  this shared machine's speed drifts over the minutes between one level and the next;
- end-to-end throughput of a concurrent long-context load: the original, the chosen level, and
  DSLA-Serve starting unconverted with the load policy on (converting and folding in flight);
- quality at the same contexts: perplexity on held-out text (Shakespeare's validation plays,
  held-out ShareGPT, and the Python reference from outside the distillation corpora) in 8K and
  2K windows, top-1 agreement with the teacher, multiple-choice cloze accuracy.

Targets: decode throughput at batch 8 and 8K at least 2.3x the baseline at the chosen level,
perplexity there within 15% of the original (ratio >= 1/1.15), and dual-state better than
single-state at equal conversion (ratio > 1). The chosen level is the lowest predicted to decode
2.3x faster at batch 8 / 8K on the machine the run is on: a converted layer saves a near-constant
share of the unconverted step there (on 2026-11-26, 8, 15, 18, 20, 23 and 26 layers gave 1.28x,
1.86x, 2.06x, 2.48x, 3.11x and 4.33x: 2.9% a layer; on 2026-11-27, on a slower machine and taking
turns with the original, 18 and 20 layers gave 1.97-2.00x and 2.07-2.30x: 2.6-2.8%), so a short
calibration (the original and the chain's furthest level, two turns each) fixes the share and the
level, and that level's figures are then measured apart from it. Which layers are converted does
not change the speed, only the quality.
`--quick` makes a tiny random model and tiny chains and checks the contract only.
Options: `--contexts=512,2048,8192`, `--long-windows=3` (8K windows of the original and the chosen
level; one for every other variant), `--level=N` (the chosen level, instead of calibrating it),
`--levels=8,15` (the other prefixes; default 25% and 50%, plus the chain's furthest),
`--chain=<name>` (default: `<model>-dsla-gpu` if distilled, else `<model>-dsla`; one missing is
distilled first with `tether dsla distill`'s defaults, about 110 minutes on 2 cores),
`--ablation=<name>` (default: `<model>-gla-gpu<k>` or `-gla-cpu<k>` for the lowest k >= the level,
else `-gla-gpu`, else `-gla`; with none of these, the single-state chain at the DSLA chain's steps,
order and settings is distilled first as `-gla-cpu<level>`, or `-gla-gpu<level>` where the chain
and this machine have a GPU), `--make=no` (refuse instead of distilling a missing chain),
`--threads=N` (torch threads for the engines; default 1: on a machine shared with
other work OpenMP's barriers stall 2 threads far more than they help: an 8K DSLA layer prefill
took 6.5-8.9 s on 2 threads and 1.5-1.9 s on 1, under a load of 7), `--quality-threads=N` (torch
threads for the quality windows' dense forwards; default every core).
"""

from __future__ import annotations

import gc
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tether.bench import BenchContext, BenchReport, Row, row

if TYPE_CHECKING:
    from tether.cloud.dsla.chain import Chain
    from tether.cloud.dsla.distill import DistillConfig

__all__ = ["level_for_speedup", "run"]

SPEED_TARGET = 2.3
PPL_TOLERANCE = 1.15
TARGET_ROUNDS = 5  # turns of the original and the chosen level for the speed target's figure


@dataclass
class Setup:
    model: object
    tokenizer: object
    order: list[int]  # the serving order (measured where `tether dsla order` ran) then the rest
    kind: str
    available: int  # layers the DSLA chain has converted
    ablation: int  # the level the single-state chain is compared at (0: none)
    texts: dict[str, np.ndarray]
    raw_texts: dict[str, str]
    contexts: list[int]
    batches: list[int]
    steps: int
    ppl_long: int
    ppl_short: int
    cloze_per_repeat: int
    load_prompts: int
    load_prompt_len: int
    load_max_tokens: int
    cloze_context: int = 300  # characters of text before a blank
    chosen: int = 0  # the chosen level (0: calibrated in the run, `_calibrated_level`)
    notes: list[str] = field(default_factory=list)
    abl_order: list[int] = field(default_factory=list)  # the chain order both ablation chains share
    teacher: str = ""  # the teacher's name, for the single-state chain's (full runs)
    chain_name: str = ""  # the DSLA chain's folder name (full runs)


def _full_setup(ctx: BenchContext) -> Setup:
    from tether.cloud.dsla import corpus
    from tether.cloud.dsla.chain import Chain
    from tether.cloud.dsla.cli import chains_root, default_chain_name, preferred_chain
    from tether.cloud.lm import Transformer, load_checkpoint

    ckpt = load_checkpoint()
    name = ctx.options.get("chain") or preferred_chain(default_chain_name(ckpt.name, 2))
    folder = chains_root() / name
    if not Chain.exists(folder) or not Chain.open(folder).num_converted:
        _make_chain(ctx, name)
    model = Transformer.from_checkpoint(ckpt)
    chain = Chain.open(folder)
    chain.check_teacher(ckpt.name)
    chain.load_into(model, activate=False)
    notes = [f"chain {folder} ({chain.num_converted}/{len(chain.order)} layers)"]
    if "measured_order" in chain.manifest:
        notes.append(f"serving order measured by `tether dsla order`: {chain.serving_order}")
    chosen = _chosen(ctx, chain.num_converted)
    held = corpus.heldout_texts(ckpt.tokenizer)
    raw = {k: f() for k, f in held.items()}
    texts = {k: corpus.tokens(ckpt.tokenizer, k, lambda k=k: raw[k]) for k in raw}
    contexts = [int(c) for c in ctx.options.get("contexts", "512,1024,2048,4096,8192").split(",")]
    return Setup(
        model,
        ckpt.tokenizer,
        chain.full_order,
        chain.kind,
        chain.num_converted,
        0,  # the ablation: loaded once the chosen level is known (`_load_ablation`)
        texts,
        raw,
        contexts,
        [1, 8],
        steps=4,
        ppl_long=8192,
        ppl_short=2048,
        cloze_per_repeat=16,
        load_prompts=8,
        load_prompt_len=2048,
        load_max_tokens=64,
        notes=notes,
        chosen=chosen,
        abl_order=chain.order,
        teacher=ckpt.name,
        chain_name=name,
    )


def _make_chain(ctx: BenchContext, name: str) -> None:
    """Distil the missing DSLA chain `name` with `tether dsla distill`'s defaults, saying how long
    that takes first (`--make=no` refuses instead, as a run with no chain did before)."""
    from tether.cloud.dsla.cli import chains_root, make_chain
    from tether.cloud.dsla.distill import DistillConfig

    cfg = DistillConfig()
    if ctx.options.get("make", "yes") == "no":
        raise SystemExit(
            f"no distilled chain at {chains_root() / name} and --make=no: run `tether dsla distill --name "
            f"{name}` (about {cfg.budget_min:.0f} minutes on 2 cores); `tether bench dsla --quick` checks the "
            "benchmark on a tiny random model meanwhile"
        )
    ctx.progress(
        f"no distilled chain {name!r}: making it first, as `tether dsla distill --name {name}` would, in about "
        f"{cfg.budget_min:.0f} minutes (its budget on 2 cores, planned for {cfg.target_fraction:.0%} of the "
        f"layers; a GPU makes a better chain, see the README). Ctrl-C stops it; `tether dsla distill --name "
        f"{name}` resumes it"
    )
    _keeping_threads(lambda: make_chain(cfg, name, given=()))  # an empty chain keeps its own settings


def _keeping_threads(work) -> None:
    """Run `work` (a distillation) and give torch back the thread count the engines set."""
    import torch

    threads = torch.get_num_threads()
    try:
        work()
    finally:
        torch.set_num_threads(threads)


def _ablation_candidates(ctx: BenchContext, s: Setup, gla_name: str) -> list[str]:
    """Single-state chains to try, best first: `--ablation=<name>` alone where given; else those
    made for a level (`<gla>-gpu<k>`, `<gla>-cpu<k>`, k >= the chosen level, lowest first), then
    `<gla>-gpu`, then `<gla>`."""
    from tether.cloud.dsla.chain import Chain
    from tether.cloud.dsla.cli import chains_root

    if ctx.options.get("ablation"):
        return [ctx.options["ablation"]]
    made_for = []
    for tag in ("gpu", "cpu"):
        for p in chains_root().glob(f"{gla_name}-{tag}*"):
            k = p.name.removeprefix(f"{gla_name}-{tag}")
            if k.isdigit() and int(k) >= s.chosen and Chain.exists(p):
                made_for.append((int(k), tag != "gpu", p.name))
    return [n for *_, n in sorted(made_for)] + [f"{gla_name}-gpu", gla_name]


def _make_ablation(ctx: BenchContext, s: Setup, name: str, chain: Chain, cfg: DistillConfig) -> str | None:
    """Distil (or resume) the single-state chain `name` with `cfg` (`single_state_config` of the DSLA
    `chain`: its steps, order and settings up to the chosen level) and return its name; None (with a
    note) where it cannot be made here: `--make=no`, or a chain distilled on a GPU on a machine
    without one."""
    import torch

    from tether.cloud.dsla.chain import Chain
    from tether.cloud.dsla.cli import chains_root, make_chain

    gpu = cfg.device.startswith("cuda")
    command = (
        f"`tether dsla distill --states 1 --steps-from {s.chain_name} --order "
        f"{','.join(map(str, s.abl_order))} --max-layers {s.chosen} --name {name}` with the chain's settings"
    )
    if ctx.options.get("make", "yes") == "no" or (gpu and not torch.cuda.is_available()):
        why = "--make=no" if ctx.options.get("make") == "no" else f"{s.chain_name} was distilled on a GPU"
        s.notes.append(
            f"no single-state chain for level {s.chosen} ({why}): ablation rows skipped; make it with {command}"
        )
        return None
    done = Chain.open(chains_root() / name).num_converted if Chain.exists(chains_root() / name) else 0
    minutes = sum(st.seconds for st in chain.steps[done : s.chosen]) / 60
    ctx.progress(
        f"no single-state chain for level {s.chosen}: making {name!r} ({done} layers so far) at "
        f"{s.chain_name}'s steps, order and settings, about {minutes:.0f} minutes (what those layers took "
        "the DSLA chain). Ctrl-C stops it; the next run resumes it"
    )
    _keeping_threads(lambda: make_chain(cfg, name, order=list(s.abl_order), steps_from=s.chain_name))
    return name


def _load_ablation(ctx: BenchContext, s: Setup) -> None:
    """Load the single-state chain made for the chosen level or the nearest above it (see
    `_ablation_candidates`; one made first where none fits), compared at the chosen level or as
    far as it goes; none leaves `s.ablation` 0 (no ablation rows)."""
    from tether.cloud.dsla.chain import Chain
    from tether.cloud.dsla.cli import chains_root, default_chain_name
    from tether.cloud.dsla.distill import single_state_config

    gla_name = default_chain_name(s.teacher, 1)
    abl = None
    for name in _ablation_candidates(ctx, s, gla_name):
        folder = chains_root() / name
        if not Chain.exists(folder):
            continue
        candidate = Chain.open(folder)
        if candidate.order[: candidate.num_converted] != s.abl_order[: candidate.num_converted]:
            s.notes.append(f"single-state chain {folder} has another order: not used")
            continue
        abl = candidate
        break
    # The one made for the chosen level is named for where the DSLA chain was distilled.
    source = Chain.open(chains_root() / s.chain_name)
    cfg = single_state_config(source.manifest.get("settings", {}), s.chosen)
    own = f"{gla_name}-{'gpu' if cfg.device.startswith('cuda') else 'cpu'}{s.chosen}"
    short = abl is not None and folder.name == own and abl.num_converted < s.chosen  # stopped part way
    if (abl is None or short) and not ctx.options.get("ablation"):
        made = _make_ablation(ctx, s, own, source, cfg)
        if made:
            folder = chains_root() / made
            abl = Chain.open(folder)
    if abl is None:
        s.notes.append("no single-state chain fits: ablation rows skipped")
        return
    abl.load_into(s.model, activate=False)
    s.ablation = min(abl.num_converted, s.chosen)
    s.notes.append(
        f"ablation chain {folder} ({abl.num_converted} layers, single state; compared at {s.ablation})"
    )


def level_for_speedup(speedup: float, furthest: int, target: float = SPEED_TARGET) -> tuple[int, float]:
    """The lowest level predicted to decode `target` x as fast as the original, from `speedup`
    measured with `furthest` layers converted, and the layers that takes (inf when converting
    does not speed decoding up); the level is at least 1 and at most `furthest`.

    Each converted layer saves the same share of the unconverted step: a step with n layers
    converted takes 1 - n * (1 - 1/speedup) / furthest of the original's.
    """
    if furthest < 1 or speedup <= 0:
        raise ValueError(f"need furthest >= 1 and speedup > 0, but got {furthest} and {speedup}")
    saving = (1 - 1 / speedup) / furthest
    if saving <= 0:
        return furthest, math.inf
    need = (1 - 1 / target) / saving
    return max(1, min(furthest, math.ceil(need - 1e-9))), need


def _calibrated_level(engine, s: Setup, T: int, batch: int) -> int:
    """The lowest level predicted to decode SPEED_TARGET x as fast as the original at `batch` / `T`.

    A converted layer saves a near-constant share of the unconverted step (the module's
    docstring), so one short measurement of the original and of the chain's furthest level fixes
    the share; the level's own figures are measured afterwards, apart from this."""
    from tether.bench.dsla import _speed as speed

    L = len(s.model.slots)
    exports = {
        n: speed.synthetic_export(engine, speed.level_kinds(L, s.order, n, s.kind), T)
        for n in (0, s.available)
    }
    rates = {
        n: float(np.median(r))
        for n, (r, _) in speed.paired_decode_speed(engine, exports, batch, s.steps, 2).items()
    }
    speedup = rates[s.available] / rates[0]
    level, need = level_for_speedup(speedup, s.available)
    saving = (1 - 1 / speedup) / s.available
    s.notes.append(
        f"chosen level {level}: calibration at batch {batch} / context {T} decoded {speedup:.2f}x with "
        f"{s.available} layers converted, so a layer saves {saving:.1%} of the unconverted step and "
        f"{SPEED_TARGET}x needs {need:.1f} layers"
        + ("" if need <= s.available else f"; the chain has {s.available}, so its furthest level is used")
    )
    return level


def _chosen(ctx: BenchContext, available: int) -> int:
    """`--level=N`, at most what the chain has; 0 when not given (calibrated in the run)."""
    level = int(ctx.options.get("level", 0))
    if level and not 1 <= level <= available:
        raise SystemExit(
            f"--level must satisfy 1 <= level <= {available} (the chain's layers), but got {level}"
        )
    return level


def _quick_setup(ctx: BenchContext) -> Setup:
    """A tiny random model, tiny DSLA and GLA chains distilled on the spot, byte-level text."""
    from tether.cloud.dsla import corpus
    from tether.cloud.dsla.chain import Chain
    from tether.cloud.dsla.distill import DistillConfig, Distiller
    from tether.cloud.dsla.sensitivity import conversion_costs, last_row_entropy, sensitivity_order
    from tether.cloud.lm import ModelConfig, Tokenizer, Transformer

    cfg = ModelConfig(
        vocab_size=259,
        n_layer=4,
        n_embd=64,
        n_head=4,
        n_kv_head=2,
        head_dim=16,
        ffn_dim=128,
        context_len=2048,
        tie_embeddings=False,
    )
    tok = Tokenizer.byte_level()
    model = Transformer.random(cfg, seed=0)
    raw = {
        "shakespeare-val": corpus.heldout_texts(tok)["shakespeare-val"]()[:60_000],
        "python-docs": corpus.heldout_texts(tok)["python-docs"]()[:30_000],
    }
    texts = {k: np.asarray(tok.encode(v, add_bos=False), dtype=np.int32) for k, v in raw.items()}
    train = texts["shakespeare-val"][: len(texts["shakespeare-val"]) // 2]
    import torch

    entropy = last_row_entropy(model, torch.from_numpy(train[:256].astype(np.int64)).view(4, 64))
    order = sensitivity_order(entropy)
    root = Path(tempfile.mkdtemp(prefix="dsla-quick-"))
    dcfg = DistillConfig(
        batch_size=2, seq_len=64, bank_batches=1, local_steps=3, e2e_steps=1, e2e_batch_size=1
    )
    for states in (2, 1):
        chain = Chain.create(
            root / str(states),
            teacher="tiny",
            n_layer=4,
            n_states=states,
            order=order,
            entropy=entropy,
            settings={},
        )
        Distiller(
            model,
            chain,
            DistillConfig(**{**dcfg.__dict__, "n_states": states, "max_layers": 4 if states == 2 else 2}),
            train,
            train,
            log=lambda _: None,
        ).run()
        Chain.open(root / str(states)).load_into(model, activate=False)
    # The serving order as `tether dsla order` measures it (it may differ from the chain order: then
    # the dual-vs-single pair is scored on the chain order, as in a full run).
    dsla = Chain.open(root / "2")
    calib = torch.from_numpy(train[-512:].astype(np.int64)).view(4, 128)
    dsla.set_measured_order(conversion_costs(model, "dsla", dsla.converted, calib), {"windows": 4})
    return Setup(
        model,
        tok,
        dsla.full_order,
        "dsla",
        4,
        2,
        texts,
        raw,
        [64, 256],
        [1, 4],
        steps=2,
        ppl_long=256,
        ppl_short=64,
        cloze_per_repeat=1,
        load_prompts=3,
        load_prompt_len=128,
        load_max_tokens=8,
        cloze_context=48,
        notes=[
            f"quick: tiny random model ({cfg.n_layer} layers) and tiny chains in {root}; "
            "full figures: `tether dsla distill`, then `tether bench dsla`"
        ],
        abl_order=order,
    )


def _levels(s: Setup, option: str | None = None) -> dict[str, int]:
    """Variant label -> converted layers: the original, the 25/50% prefixes (or `option`, e.g. "8,15"),
    the chosen level and the furthest."""
    L = len(s.model.slots)
    extra = [int(x) for x in option.split(",")] if option else [math.ceil(f * L) for f in (0.25, 0.5)]
    out = {"original": 0}
    for n in sorted({*extra, s.chosen, s.available}):
        if 0 < n <= s.available:
            out[f"{s.kind}-{n}/{L}"] = n
    return out


def run(ctx: BenchContext) -> BenchReport:
    import torch

    from tether.bench.dsla import _quality as quality
    from tether.bench.dsla import _speed as speed
    from tether.cloud.dsla.serve import DSLAServe
    from tether.cloud.lm import CacheConfig, EngineConfig, LLMEngine, SchedulerConfig

    threads = int(ctx.options.get("threads", 1))
    torch.set_num_threads(threads)
    t_start = time.perf_counter()
    load_start = (
        os.getloadavg()
    )  # decode speeds are only comparable on a quiet machine: recorded in the notes
    s = _quick_setup(ctx) if ctx.quick else _full_setup(ctx)
    model, L = s.model, len(s.model.slots)

    # --- decode speed -------------------------------------------------------------------------
    T_max = max(s.contexts)
    # A cache of T tokens plus the prompt's last token and the timed steps must fit the model's context
    # (8192 for SmolLM2: prompt and output together), so the longest context is measured a little short.
    room = s.steps * 3 + 16
    cached = {T: min(T, model.config.context_len - room) for T in s.contexts}
    if cached[T_max] != T_max:
        s.notes.append(
            f"context {T_max} is measured with {cached[T_max]} cached tokens: the model's context "
            f"({model.config.context_len}) holds the cache, the next prompt token and the timed steps"
        )
    kv_bytes = max(s.batches) * (T_max + 64) * L * model.config.kv_bytes_per_token_per_layer * 1.1
    config = EngineConfig(
        cache=CacheConfig(kv_cache_bytes=int(kv_bytes), side_cache_bytes=1 << 20, prefix_caching=False),
        scheduler=SchedulerConfig(max_batch_size=max(s.batches), max_tokens_per_step=256),
        max_context=T_max + 64,
        threads=threads,  # an engine sets torch's (process-wide) thread count to its own
    )
    engine = LLMEngine(model, s.tokenizer, config, name="dsla-bench")
    if not s.chosen:
        ctx.progress("calibrating the chosen level")
        s.chosen = _calibrated_level(engine, s, cached[T_max], max(s.batches))
    if ctx.quick:
        s.ablation = min(s.ablation, s.chosen)
    else:
        _load_ablation(ctx, s)
    levels = _levels(s, ctx.options.get("levels"))
    chosen = s.chosen
    chosen_label = f"{s.kind}-{chosen}/{L}"
    gla_label = f"gla-{s.ablation}/{L}"
    dsla_at_ablation = f"{s.kind}-{s.ablation}/{L}"
    abl_order = s.abl_order or s.order
    # When the serving order converts other layers at that level, DSLA is scored on the ablation's
    # layers too, for quality only (speed depends on how many layers are converted, not which).
    pair_apart = set(abl_order[: s.ablation]) != set(s.order[: s.ablation])
    if pair_apart:
        dsla_at_ablation += " chain order"
    rows: list[Row] = []
    curves: dict[tuple[str, int], list[tuple[int, float]]] = {}
    # (label, converted layers, kind, order)
    variants = [(label, n, s.kind, s.order) for label, n in levels.items()]
    if s.ablation:
        variants.append((gla_label, s.ablation, "gla", abl_order))
        if dsla_at_ablation not in levels:
            variants.append((dsla_at_ablation, s.ablation, s.kind, abl_order))
    speed_at: dict[tuple[str, int, int], tuple[list[float], list[float]]] = {}
    for label, n, kind, order in variants:
        if pair_apart and label == dsla_at_ablation:
            continue
        full = label in ("original", chosen_label)
        for T in (
            s.contexts if full else [c for c in s.contexts if c in (min(s.contexts), 2048, T_max)] or [T_max]
        ):
            export = speed.synthetic_export(engine, speed.level_kinds(L, order, n, kind), cached[T])
            for b in s.batches:
                ctx.progress(f"decode {label} ctx {T} batch {b}")
                speed_at[(label, T, b)] = speed.decode_speed(engine, export, b, s.steps, repeats=3)
                curves.setdefault((label, b), []).append((T, float(np.median(speed_at[(label, T, b)][0]))))
    # The target's figure: the chosen level and the original again, taking turns
    # (`paired_decode_speed`); the other rows keep the figures above.
    pair = {
        label: speed.synthetic_export(engine, speed.level_kinds(L, s.order, n, s.kind), cached[T_max])
        for label, n in (("original", 0), (chosen_label, chosen))
    }
    ctx.progress(f"decode original and {chosen_label} ctx {T_max} batch {max(s.batches)}, taking turns")
    paired = speed.paired_decode_speed(engine, pair, max(s.batches), s.steps, TARGET_ROUNDS)
    seq = {label: float(np.median(speed_at[(label, T_max, max(s.batches))][0])) for label in pair}
    s.notes.append(
        f"{chosen_label} at batch {max(s.batches)} / {T_max}: {np.median(paired[chosen_label][0]):.3g} "
        f"against {np.median(paired['original'][0]):.3g} tokens/s taking turns; in the level-by-level "
        f"pass, each level's repeats in a row: {seq[chosen_label]:.3g} against {seq['original']:.3g} "
        f"({seq[chosen_label] / seq['original']:.2f}x)"
    )
    engine.stop()
    del engine  # its KV pool (gigabytes at 8K x 8) goes before the next engine's
    gc.collect()
    for (label, T, b), (rates, ms) in speed_at.items():
        if label == "original":
            continue
        base_rates, base_ms = speed_at.get(("original", T, b), (None, None))
        if base_rates is None:
            continue
        params = {"context": cached[T], "batch": b, "converted": label}
        target = None
        if label == chosen_label and T_max == T and b == max(s.batches):
            target = SPEED_TARGET
            (rates, ms), (base_rates, base_ms) = paired[label], paired["original"]
            params["measured"] = f"{TARGET_ROUNDS} turns each with the original"
        rows.append(
            row(
                f"decode tokens/s b{b} ctx{T} {label}",
                rates,
                "tokens/s",
                "higher",
                params=params,
                baseline="original",
                baseline_values=base_rates,
                target=target,
            )
        )
        rows.append(
            row(
                f"decode latency b{b} ctx{T} {label}",
                ms,
                "ms/step",
                "lower",
                params=params,
                baseline="original",
                baseline_values=base_ms,
            )
        )
    for b in s.batches:
        rates, ms = speed_at[("original", T_max, b)]
        rows.append(
            row(
                f"decode tokens/s b{b} ctx{T_max} original",
                rates,
                "tokens/s",
                "higher",
                params={"context": cached[T_max], "batch": b},
            )
        )

    # --- quality ----------------------------------------------------------------------------------
    # Dense forwards of whole windows: big matrix products that use every core (a 4K window took
    # 38 s on one thread and 22 s on two here), where the decode steps above are timed on `threads`.
    t_quality = time.perf_counter()
    minutes = {"setup and decode speed": (t_quality - t_start) / 60}
    quality_threads = int(ctx.options.get("quality_threads", os.cpu_count() or 1))
    torch.set_num_threads(quality_threads)
    long_text = quality.LONG_TEXT
    long_windows = int(ctx.options.get("long_windows", 3))
    long_w = quality.long_windows(s.texts, long_windows, s.ppl_long)
    short_w = quality.short_windows(s.texts, s.ppl_short)
    items = []
    for i, (name, text) in enumerate(s.raw_texts.items()):
        if name != "sharegpt-val":
            items += quality.cloze_items(
                text, s.tokenizer, s.cloze_per_repeat * 3 // 2 + 1, seed=10 + i, context_chars=s.cloze_context
            )
    items = items[: 3 * s.cloze_per_repeat]
    subsets = [items[i::3] for i in range(3)]
    teacher_long = teacher_short = None
    q: dict[str, dict[str, list[float]]] = {}
    for label, n, kind, order in variants:
        ctx.progress(f"quality {label}")
        speed.set_level(model, order, n, kind)
        # All 8K windows for the two rows the target compares; one for the others (an 8K window is
        # ~80 s a variant on one thread here, and the run has to fit 30 minutes).
        n_long = long_windows if label in ("original", chosen_label) else 1
        p_long, top_long, a_long, fwd_long = quality.score_windows(model, long_w[:n_long], teacher_long)
        p_short, top_short, a_short, _ = quality.score_windows(model, short_w, teacher_short)
        if label == "original":
            teacher_long, teacher_short = top_long, top_short
            a_long, a_short = [1.0] * n_long, [1.0] * len(short_w)
        q[label] = {
            "forward": fwd_long,
            "long": p_long,
            "short": p_short,
            "agree_long": a_long,
            "agree_short": a_short,
            "cloze": [quality.cloze_accuracy(model, sub) for sub in subsets],
        }
    speed.set_level(model, s.order, 0, s.kind)
    base = q["original"]
    for label, n, _kind, order in variants:
        if label == "original":
            continue
        params = {"converted": label, "layers": n, "which": sorted(order[:n])}
        tol = 1 / PPL_TOLERANCE if label == chosen_label else None
        rows.append(
            row(
                f"ppl {long_text} ctx{s.ppl_long} {label}",
                q[label]["long"],
                "ppl",
                "lower",
                params=params,
                baseline="original",
                baseline_values=base["long"][: len(q[label]["long"])],
                target=tol,
            )
        )
        rows.append(
            row(
                f"ppl held-out ctx{s.ppl_short} {label}",
                q[label]["short"],
                "ppl",
                "lower",
                params=params,
                baseline="original",
                baseline_values=base["short"],
            )
        )
        for j, name in enumerate(s.texts):
            rows.append(
                row(
                    f"ppl {name} ctx{s.ppl_short} {label}",
                    q[label]["short"][j],
                    "ppl",
                    "lower",
                    params=params,
                    baseline="original",
                    baseline_values=base["short"][j],
                )
            )
        rows.append(
            row(
                f"dense forward tokens/s ctx{s.ppl_long} {label}",
                q[label]["forward"],
                "tokens/s",
                "higher",
                params=params,
                baseline="original",
                baseline_values=base["forward"][: len(q[label]["forward"])],
            )
        )
        rows.append(
            row(
                f"top-1 agreement ctx{s.ppl_long} {label}",
                q[label]["agree_long"],
                "fraction",
                "higher",
                params=params,
            )
        )
        rows.append(
            row(
                f"top-1 agreement ctx{s.ppl_short} {label}",
                q[label]["agree_short"],
                "fraction",
                "higher",
                params=params,
            )
        )
        rows.append(
            row(
                f"cloze accuracy {label}",
                q[label]["cloze"],
                "fraction",
                "higher",
                params=params,
                baseline="original",
                baseline_values=base["cloze"],
            )
        )
    rows.append(
        row("cloze accuracy original", base["cloze"], "fraction", "higher", params={"items": len(items)})
    )
    if s.ablation:
        rows.append(
            row(
                f"dual vs single state: ppl held-out ctx{s.ppl_short} at {s.ablation}/{L}",
                q[dsla_at_ablation]["short"],
                "ppl",
                "lower",
                params={"layers": s.ablation},
                baseline=gla_label,
                baseline_values=q[gla_label]["short"],
                target=1.0,
            )
        )
        k = min(len(q[dsla_at_ablation]["long"]), len(q[gla_label]["long"]))
        rows.append(
            row(
                f"dual vs single state: ppl {long_text} ctx{s.ppl_long} at {s.ablation}/{L}",
                q[dsla_at_ablation]["long"][:k],
                "ppl",
                "lower",
                params={"layers": s.ablation, "windows": k},
                baseline=gla_label,
                baseline_values=q[gla_label]["long"][:k],
            )
        )

    # --- a concurrent long-context load ------------------------------------------------------------
    t_load = time.perf_counter()
    minutes["quality"] = (t_load - t_quality) / 60
    torch.set_num_threads(threads)
    prompts = [
        w.tolist() for w in quality.windows(s.texts[long_text], s.load_prompts, s.load_prompt_len, seed=3)
    ]
    load_cfg = EngineConfig(
        cache=CacheConfig(
            kv_cache_bytes=int(
                1.2
                * s.load_prompts
                * (s.load_prompt_len + s.load_max_tokens + 32)
                * L
                * model.config.kv_bytes_per_token_per_layer
            ),
            side_cache_bytes=1 << 30,
        ),
        scheduler=SchedulerConfig(max_batch_size=8, max_tokens_per_step=256),
        max_context=s.load_prompt_len + s.load_max_tokens + 16,
        threads=threads,
    )
    loads = {}
    for label, n in (("original", 0), (chosen_label, chosen), ("DSLA-Serve auto", None)):
        ctx.progress(f"concurrent load {label}")
        speed.set_level(model, s.order, n or 0, s.kind)
        eng = LLMEngine(model, s.tokenizer, load_cfg, name="dsla-load")
        serve = DSLAServe(eng, s.order[:chosen], s.kind, policy=speed.bench_policy()) if n is None else None
        loads[label] = speed.concurrent_load(eng, prompts, s.load_max_tokens, serve=serve)
        if serve is not None:
            s.notes.append(
                f"DSLA-Serve auto ended at {serve.level} layers; folded {serve.folds.folded} "
                f"sequence-layers in flight ({serve.folds.failed} kept softmax), "
                f"{serve.folds.seconds * 1e3:.0f} ms folding"
            )
    speed.set_level(model, s.order, 0, s.kind)
    for label, res in loads.items():
        rows.append(
            row(
                f"concurrent load tokens/s {label}",
                res["tokens_per_s"],
                "tokens/s",
                "higher",
                params={
                    "prompts": s.load_prompts,
                    "prompt_len": s.load_prompt_len,
                    "max_tokens": s.load_max_tokens,
                    "ttft_mean_s": round(res["ttft_mean_s"], 2),
                },
                baseline=None if label == "original" else "original",
                baseline_values=None if label == "original" else loads["original"]["tokens_per_s"],
            )
        )
    minutes["concurrent load"] = (time.perf_counter() - t_load) / 60
    s.notes.append(f"torch threads per engine: {threads}; for the quality windows: {quality_threads}")
    s.notes.append(
        f"load average (1/5/15 min) at the start {'/'.join(f'{x:.1f}' for x in load_start)}, at the end "
        f"{'/'.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores"
    )
    s.notes.append(
        f"benchmark took {(time.perf_counter() - t_start) / 60:.1f} min ("
        + ", ".join(f"{k} {v:.1f}" for k, v in minutes.items())
        + ")"
    )

    def plot(path: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.5))
        for (label, b), pts in sorted(curves.items()):
            pts = sorted(pts)
            a1.plot(
                [p[0] for p in pts],
                [p[1] for p in pts],
                marker="o",
                ls="-" if b == 1 else "--",
                label=f"{label} b{b}",
            )
        a1.set(
            xscale="log",
            yscale="log",
            xlabel="context (tokens)",
            ylabel="decode tokens/s",
            title="decode throughput against context",
        )
        a1.legend(fontsize=7)
        xs = [levels[k] for k in levels]
        a2.plot(
            xs, [np.median(q[k]["short"]) for k in levels], marker="o", label=f"ppl held-out {s.ppl_short}"
        )
        a2.plot(
            xs,
            [q[k]["long"][0] for k in levels],  # the window every level scored (the others only some)
            marker="s",
            label=f"ppl {long_text} {s.ppl_long} (window 1)",
        )
        if s.ablation:
            a2.plot(
                [s.ablation],
                [np.median(q[gla_label]["short"])],
                marker="x",
                ls="",
                ms=10,
                label=f"single state, ppl {s.ppl_short}",
            )
        a2.set(
            yscale="log",
            xlabel="converted layers",
            ylabel="perplexity",
            title="quality against converted layers",
        )
        a2.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)

    return BenchReport(rows, plot=plot, notes=s.notes)
