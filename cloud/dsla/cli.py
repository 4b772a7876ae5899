"""`tether dsla`: distil a DSLA conversion chain, measure its serving order, show chains, serve on the bus."""

from __future__ import annotations

import sys
import time
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

if TYPE_CHECKING:
    from tether.cloud.dsla.chain import Chain
    from tether.cloud.dsla.distill import DistillConfig

app = typer.Typer(
    name="dsla",
    help="DSLA-Serve: dual-state linear attention, chained distillation, online conversion.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def chains_root() -> Path:
    from tether.settings import settings

    return settings().artefact_dir("dsla", "chains")


def default_chain_name(model_name: str, n_states: int) -> str:
    from tether.cloud.dsla.layer import kind_name

    return f"{model_name}-{kind_name(n_states)}"


@app.command()
def distill(
    ctx: typer.Context,
    name: Optional[str] = typer.Option(
        None, help="Chain folder name under <artefacts>/dsla/chains (default: <model>-dsla)."
    ),
    states: int = typer.Option(2, min=1, max=2, help="2 = DSLA, 1 = single-state GLA (the ablation)."),
    budget_min: float = typer.Option(
        110.0, min=0.01, help="Wall-clock budget of this run from its start, minutes."
    ),
    target: float = typer.Option(
        0.8, min=0.01, max=1.0, help="Fraction of the layers the budget is planned for."
    ),
    max_layers: int = typer.Option(0, min=0, help="Stop after this many converted layers (0 = all)."),
    local_steps: int = typer.Option(300, min=0, help="Layer-local steps per layer at most."),
    e2e_steps: int = typer.Option(4, min=0, help="End-to-end steps per layer at most."),
    bank_batches: int = typer.Option(8, min=1, help="Fixed training batches (batch-size x seq-len tokens)."),
    seq_len: int = typer.Option(256, min=8),
    batch_size: int = typer.Option(4, min=1, help="Sequences per layer-local step (and per bank batch)."),
    e2e_batch_size: int = typer.Option(2, min=1, help="Sequences per end-to-end step (<= batch size)."),
    lr_proj: float = typer.Option(1e-4, min=0.0, help="Adam learning rate of q and o."),
    lr_gates: float = typer.Option(3e-3, min=0.0, help="Adam learning rate of the gates and the mixture."),
    local_share: float = typer.Option(
        0.65, min=0.0, max=1.0, help="Of a layer's time, the share of the layer-local phase."
    ),
    val_batch: int = typer.Option(1, min=1, help="Held-out windows for the per-step perplexity."),
    device: str = typer.Option("cpu", help="cpu or cuda: where the model, the bank and the steps run."),
    precision: str = typer.Option(
        "fp32", help="fp32, tf32 (float32 matmuls in TensorFloat-32 on CUDA) or bf16 (autocast)."
    ),
    save_dtype: str = typer.Option(
        "float32", help="Chain step files as float32, bfloat16 or float16 (smaller, to carry a chain)."
    ),
    tokens: Optional[Path] = typer.Option(
        None,
        help="Read the training and held-out tokens from this .npz (`tether dsla tokens` writes it) "
        "instead of tokenising the corpora: for a machine without them.",
    ),
    e2e_lr_scale: float = typer.Option(
        1.0, min=0.0, help="End-to-end learning rates as a multiple of --lr-proj / --lr-gates."
    ),
    lr_min: float = typer.Option(
        1.0, min=0.0, max=1.0, help="Cosine decay of each phase's learning rate to this fraction (1: none)."
    ),
    e2e_fresh_adam: bool = typer.Option(
        False, "--e2e-fresh-adam", help="A new Adam (and ramp) for the end-to-end phase."
    ),
    e2e_warmup: int = typer.Option(0, min=0, help="With --e2e-fresh-adam: its warm-up steps."),
    ce_weight: float = typer.Option(
        1.0, min=0.0, help="Cross-entropy weight in the end-to-end loss (0: KL and MSE to the teacher only)."
    ),
    alpha: float = typer.Option(1.0, min=0.0, help="KL(teacher || student) weight."),
    beta: float = typer.Option(0.1, min=0.0, help="Hidden-state MSE weight."),
    history_bias: float = typer.Option(
        0.0, min=-20.0, max=20.0, help="Initial bias of the first state's gates (0: the reference's)."
    ),
    recency_bias: float = typer.Option(
        0.0,
        min=-20.0,
        max=20.0,
        help="Initial bias of the second state's gates (0: the reference's; < 0: a short memory; DSLA only).",
    ),
    gate_separation: float = typer.Option(
        0.0, min=0.0, help="Weight of the loss that pushes the two states' gates apart (DSLA only)."
    ),
    seed: int = typer.Option(
        0, help="Seed of the training batches and of the new gate weights: same seed, same chain."
    ),
    threads: int = typer.Option(
        2,
        min=1,
        max=256,
        help="torch threads; 1 on a machine shared with other work (OpenMP barriers stall).",
    ),
    fresh: bool = typer.Option(
        False, "--fresh", help="Delete the chain folder first instead of resuming it."
    ),
    order_from: Optional[str] = typer.Option(
        None,
        help="Take the order from this chain (no calibration pass): its measured order first where "
        "`tether dsla order` measured one, then its other layers in chain order.",
    ),
    order: Optional[str] = typer.Option(
        None,
        "--order",
        help="Convert these layers first, in this order (comma-separated, e.g. a serving order that "
        "`tether dsla order` measured on an earlier chain), then the rest in sensitivity order. On a "
        "resume it reorders the layers not yet converted; it must begin with those converted.",
    ),
    steps_from: Optional[str] = typer.Option(
        None, help="Train each layer exactly as many steps as this chain did (an ablation at equal effort)."
    ),
) -> None:
    """Convert layers one at a time in sensitivity order, or one given with --order or --order-from
    (layer-local, then end to end); resumable: a resume keeps the chain's own settings, and refuses
    an option given that differs from them (the budget, --max-layers, --target, --device,
    --precision and --save-dtype may change from run to run)."""
    from tether.cloud.dsla.chain import ChainError
    from tether.cloud.dsla.distill import DistillConfig

    field_of = {"states": "n_states", "target": "target_fraction"}
    given = {
        field_of.get(p, p)
        for p in ctx.params
        if getattr(ctx.get_parameter_source(p), "name", "DEFAULT") not in ("DEFAULT", "DEFAULT_MAP")
    }

    if order and order_from:
        raise typer.BadParameter("--order and --order-from both set the order; give one of them")
    first = _layer_list(order) if order else None
    cfg = DistillConfig(
        n_states=states,
        budget_min=budget_min,
        target_fraction=target,
        max_layers=max_layers,
        local_steps=local_steps,
        e2e_steps=e2e_steps,
        bank_batches=bank_batches,
        seq_len=seq_len,
        alpha=alpha,
        beta=beta,
        gate_separation=gate_separation,
        history_bias=history_bias,
        recency_bias=recency_bias,
        e2e_lr_scale=e2e_lr_scale,
        lr_min=lr_min,
        e2e_fresh_adam=e2e_fresh_adam,
        e2e_warmup=e2e_warmup,
        ce_weight=ce_weight,
        seed=seed,
        batch_size=batch_size,
        e2e_batch_size=e2e_batch_size,
        lr_proj=lr_proj,
        lr_gates=lr_gates,
        local_share=local_share,
        val_batch=val_batch,
        device=device,
        precision=precision,
        save_dtype=save_dtype,
    )
    try:
        make_chain(
            cfg,
            name,
            order=first,
            order_from=order_from,
            steps_from=steps_from,
            tokens=tokens,
            fresh=fresh,
            threads=threads,
            given=given,
        )
    except ChainError as e:
        raise typer.BadParameter(str(e)) from None


def make_chain(
    cfg: DistillConfig,
    name: str | None = None,
    *,
    order: list[int] | None = None,
    order_from: str | None = None,
    steps_from: str | None = None,
    tokens: Path | None = None,
    fresh: bool = False,
    threads: int = 2,
    given: Collection[str] | None = None,
) -> Chain:
    """Distil the chain `name` (default `<model>-dsla`, or `-gla` for one state) under the chains
    folder with `cfg`, or resume it, with a progress bar per layer and a log line per step: what
    `tether dsla distill` does. `order` converts those layers first (on a resume: the layers not
    yet converted, see `Chain.reorder`), `order_from` takes another chain's order, `steps_from`
    trains each layer as many steps as another chain did. A resume keeps the chain's own settings
    for those of `cfg` outside `given` (the caller's choices; None: all) and RUN_SETTINGS. Raises
    ChainError for an order that does not fit the chain or the model, or a chosen setting that
    differs from the chain's."""
    import shutil

    import numpy as np
    import torch
    from tqdm import tqdm

    from tether.cloud.dsla.chain import Chain, ChainError
    from tether.cloud.dsla.distill import (
        Distiller,
        check_resume_data,
        config_dict,
        resume_config,
        sample_batches,
    )
    from tether.cloud.dsla.sensitivity import last_row_entropy, leading_order, sensitivity_order
    from tether.cloud.lm.checkpoint import load_checkpoint
    from tether.cloud.lm.model import Transformer

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    ckpt = load_checkpoint()
    model = Transformer.from_checkpoint(ckpt)
    folder = chains_root() / (name or default_chain_name(ckpt.name, cfg.n_states))
    if fresh and folder.exists():
        shutil.rmtree(folder)
    log = lambda msg: tqdm.write(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stdout)  # noqa: E731
    log(f"model {ckpt.name} loaded in {time.perf_counter() - t0:.0f} s; chain folder {folder}")
    train, val, sources = _load_tokens(tokens, ckpt.tokenizer)
    log(f"tokens: {len(train)} training, {len(val)} held out ({'; '.join(sources)})")
    if Chain.exists(folder):
        chain = Chain.open(folder)
        chain.check_teacher(ckpt.name)
        made = chain.manifest.get("settings", {})
        try:
            check_resume_data(made, sources, len(train))
        except ValueError as e:
            raise ChainError(
                f"cannot resume {folder.name}: {e}; resume it with the tokens it was made with (the same "
                "--tokens file, or none to read the corpora), or give --fresh to start it over (or --name "
                "for a new chain)"
            ) from None
        try:
            resumed = resume_config(cfg, made, given)
        except ValueError as e:
            raise ChainError(
                f"cannot resume {folder.name}: {e}; leave those options out to resume it with its own, "
                "or give --fresh to start it over (or --name for a new chain)"
            ) from None
        taken = {k: v for k, v in config_dict(resumed).items() if v != getattr(cfg, k)}
        if taken:
            log("the chain's own settings: " + ", ".join(f"{k}={v!r}" for k, v in taken.items()))
        cfg = resumed
        if order:
            before = chain.order
            if chain.reorder(order):
                log(f"order of the layers not yet converted changed: {before} -> {chain.order}")
        log(f"resuming: {chain.num_converted} of {len(chain.order)} layers converted")
    else:
        if order_from:
            source = Chain.open(chains_root() / order_from)
            source.check_teacher(ckpt.name)
            layers, entropy = source.full_order, list(source.manifest["entropy"])
            log(f"order from {order_from}: {layers}")
        else:
            calib = sample_batches(
                train, 1, cfg.calib_windows, cfg.calib_len, np.random.default_rng(cfg.seed + 100)
            )[0]
            entropy = last_row_entropy(model, calib)  # on the CPU: the model moves to the device later
            if order:
                try:
                    layers = leading_order(order, entropy)
                except ValueError as e:
                    raise ChainError(f"the order {order}: {e}") from None
                log(f"order: {order} as given, then the rest by sensitivity: {layers}")
            else:
                layers = sensitivity_order(entropy)
                log(f"sensitivity order (lowest entropy first): {layers}")
        settings = config_dict(cfg) | {"sources": sources, "train_tokens": int(len(train))}
        chain = Chain.create(
            folder,
            teacher=ckpt.name,
            n_layer=model.config.n_layer,
            n_states=cfg.n_states,
            order=layers,
            entropy=entropy,
            settings=settings,
        )
    n_layer = model.config.n_layer
    last = n_layer if cfg.max_layers == 0 else min(cfg.max_layers, n_layer)
    bar = tqdm(
        total=last, initial=chain.num_converted, unit="layer", mininterval=5, file=sys.stderr, desc="distil"
    )
    fixed = _StepsFrom(chains_root() / steps_from, log) if steps_from else None
    distiller = Distiller(model, chain, cfg, train, val, log=log, fixed_steps=fixed)

    def progress(layer: int, text: str) -> None:
        bar.set_postfix_str(f"layer {layer}: {text}", refresh=False)

    before = chain.num_converted
    for _ in distiller.run_iter(progress, started=t0):
        bar.update(1)
    bar.close()
    log(
        f"done: {chain.num_converted} of {n_layer} layers converted "
        f"({chain.num_converted - before} in this run, {(time.perf_counter() - t0) / 60:.1f} min)"
    )
    return chain


def _layer_list(text: str) -> list[int]:
    """'25, 29,27' -> [25, 29, 27]; a clear error for anything else."""
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise typer.BadParameter(
            f"--order takes comma-separated layer indices, but got {text!r}; e.g. --order 25,29,27"
        ) from None


def _load_tokens(path: Optional[Path], tokenizer) -> tuple:
    """(training tokens, held-out tokens (ShareGPT validation), sources) from `path` or the corpora."""
    import numpy as np

    if path is None:
        from tether.cloud.dsla import corpus

        train = corpus.tokens(tokenizer, "train", lambda: corpus.train_text(tokenizer))
        val = corpus.tokens(tokenizer, "sharegpt-val", corpus.heldout_texts(tokenizer)["sharegpt-val"])
        return train, val, corpus.distill_sources()
    if not path.is_file():
        raise typer.BadParameter(f"{path} does not exist; write it with `tether dsla tokens --out {path}`")
    with np.load(path, allow_pickle=False) as f:
        missing = {"train", "val", "sources"} - set(f.files)
        if missing:
            raise typer.BadParameter(
                f"{path} lacks {sorted(missing)}; write it with `tether dsla tokens --out {path}`"
            )
        return f["train"].astype(np.int64), f["val"].astype(np.int64), [str(x) for x in f["sources"]]


@app.command()
def tokens(
    out: Path = typer.Option(..., help="The .npz to write (train, val: uint16 token ids; sources)."),
    max_train: int = typer.Option(0, min=0, help="Keep at most this many training tokens (0 = all)."),
) -> None:
    """Write the distillation tokens (and the held-out ShareGPT tokens) to one file, for
    `tether dsla distill --tokens FILE` on a machine that has the model but not the corpora."""
    import numpy as np

    from tether.cloud.lm.checkpoint import load_checkpoint

    ckpt = load_checkpoint()
    train, val, sources = _load_tokens(None, ckpt.tokenizer)
    if ckpt.config.vocab_size > 1 << 16:
        raise typer.BadParameter(
            f"uint16 holds token ids < 65536, but the vocabulary has {ckpt.config.vocab_size}"
        )
    if max_train:
        train = train[:max_train]
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, train=train.astype(np.uint16), val=val.astype(np.uint16), sources=np.array(sources))
    typer.echo(f"{out}: {len(train)} training and {len(val)} held-out tokens of {ckpt.name}")


class _StepsFrom(Mapping):
    """Per layer, the (local, e2e) steps another chain trained it with; waits for that chain to get
    there, so an ablation can run beside the chain it copies."""

    def __init__(self, folder: Path, log, poll_s: float = 2.0, timeout_s: float = 4 * 3600) -> None:
        from tether.cloud.dsla.chain import Chain

        self.folder, self.log, self.poll_s, self.timeout_s = folder, log, poll_s, timeout_s
        deadline = time.monotonic() + timeout_s
        while not Chain.exists(folder):  # the chain it copies may start a moment later
            if time.monotonic() > deadline:
                raise FileNotFoundError(f"{folder} never appeared")
            time.sleep(poll_s)
        self.order = Chain.open(folder).order

    def _steps(self) -> dict[int, tuple[int, int]]:
        from tether.cloud.dsla.chain import Chain

        return {st.layer: (st.local_steps, st.e2e_steps) for st in Chain.open(self.folder).steps}

    def __getitem__(self, layer: int) -> tuple[int, int]:
        deadline = time.monotonic() + self.timeout_s
        waited = False
        while layer not in (steps := self._steps()):
            if time.monotonic() > deadline:
                raise KeyError(f"{self.folder} never converted layer {layer}")
            if not waited:
                self.log(f"waiting for {self.folder.name} to convert layer {layer}")
                waited = True
            time.sleep(self.poll_s)
        return steps[layer]

    def __contains__(self, layer: object) -> bool:
        return layer in self.order

    def __iter__(self):
        return iter(self.order)

    def __len__(self) -> int:
        return len(self.order)


@app.command()
def status(name: Optional[str] = typer.Argument(None, help="A chain folder name (default: all).")) -> None:
    """List distilled chains: layers converted, time, held-out perplexity along the chain."""
    from tether.cloud.dsla.chain import Chain

    root = chains_root()
    folders = [root / name] if name else sorted(p for p in root.iterdir() if Chain.exists(p))
    if not folders:
        typer.echo(f"no chain under {root}; run `tether dsla distill`")
        return
    for folder in folders:
        chain = Chain.open(folder)
        steps = chain.steps
        minutes = sum(s.seconds for s in steps) / 60
        typer.echo(f"{folder.name}: {len(steps)}/{len(chain.order)} layers ({chain.kind}), {minutes:.1f} min")
        if "measured_order" in chain.manifest:
            typer.echo(f"  serving order (measured): {chain.serving_order}")
        for i, s in enumerate(steps, 1):
            local = f"{s.local_loss[0][1]:.3f}->{s.local_loss[-1][1]:.3f}" if s.local_loss else "-"
            e2e = f"{s.e2e_loss[0][1]:.3f}->{s.e2e_loss[-1][1]:.3f}" if s.e2e_loss else "-"
            typer.echo(
                f"  {i:2d}. layer {s.layer:2d}  {s.seconds:6.0f} s  local {local}  e2e {e2e}  "
                f"val ppl {s.val_ppl:.2f}"
            )


@app.command()
def order(
    name: Optional[str] = typer.Argument(
        None, help="Chain folder name (default: <model>-dsla-gpu if distilled, else <model>-dsla)."
    ),
    windows: int = typer.Option(6, min=1, help="Calibration windows from the distillation corpus."),
    seq_len: int = typer.Option(1024, min=8, help="Tokens per window."),
    seed: int = typer.Option(7),
    threads: int = typer.Option(2, min=1, max=256, help="torch threads."),
    clear: bool = typer.Option(False, "--clear", help="Forget the measured order: serve in chain order."),
    tokens: Optional[Path] = typer.Option(
        None, help="Read the tokens from this .npz (`tether dsla tokens`)."
    ),
) -> None:
    """Measure each converted layer's cost (KL from the teacher with that layer alone converted) and
    make serving convert the cheapest first; `tether bench dsla` and `tether dsla serve` use it."""
    import numpy as np
    import torch

    from tether.cloud.dsla.chain import Chain
    from tether.cloud.dsla.distill import sample_batches
    from tether.cloud.dsla.sensitivity import conversion_costs
    from tether.cloud.lm.checkpoint import load_checkpoint
    from tether.cloud.lm.model import Transformer

    torch.set_num_threads(threads)
    ckpt = load_checkpoint()
    folder = chains_root() / (name or preferred_chain(default_chain_name(ckpt.name, 2)))
    chain = Chain.open(folder)
    chain.check_teacher(ckpt.name)
    if clear:
        chain.clear_measured_order()
        typer.echo(f"{folder.name}: serving in chain order {chain.converted}")
        return
    if not chain.converted:
        raise typer.BadParameter(f"{folder.name} has no converted layer yet; run `tether dsla distill` first")
    t0 = time.perf_counter()
    model = Transformer.from_checkpoint(ckpt)
    layers = chain.load_into(model, activate=False)
    train, _, _ = _load_tokens(tokens, ckpt.tokenizer)
    calib = sample_batches(train, 1, windows, seq_len, np.random.default_rng(seed))[0]

    def shown(layer: int, cost: float) -> None:
        typer.echo(f"  layer {layer:2d}: KL {cost:.4f} nats/token")

    costs = conversion_costs(model, chain.kind, layers, calib, progress=shown)
    how = {"metric": "kl_nats_per_token", "windows": windows, "seq_len": seq_len, "seed": seed}
    serving = chain.set_measured_order(costs, how)
    typer.echo(
        f"{folder.name}: serving order {serving} (chain order {chain.converted}); "
        f"{time.perf_counter() - t0:.0f} s"
    )


def preferred_chain(name: str) -> str:
    """`<name>-gpu` (the chain distilled larger on a GPU, `tether dsla distill --device cuda --name
    <name>-gpu`) when it exists, else `name`."""
    from tether.cloud.dsla.chain import Chain

    return f"{name}-gpu" if Chain.exists(chains_root() / f"{name}-gpu") else name


@app.command()
def serve(
    chain: Optional[str] = typer.Option(
        None, help="Chain folder name (default: <model>-dsla-gpu if distilled, else <model>-dsla)."
    ),
) -> None:
    """Serve the model with online conversion on the bus (node /cloud/dsla); Ctrl-C stops it."""
    from tether.cloud.dsla.service import main

    main(["--ros-args", "-p", f"chain:={chain or ''}"])
