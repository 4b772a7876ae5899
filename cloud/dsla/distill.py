"""Chained distillation of DSLA layers (arXiv 2506.09316), sized for a CPU: layer-local first, then end to end.

Layers are converted one at a time in the sensitivity order; each is trained with every
earlier one already converted and frozen, so every prefix of the chain is a consistent
model. Per layer, two phases:

1. layer-local: on the teacher's prefix (its input x_l to the layer, kept from one teacher
   pass, no gradient), the MSE between the DSLA layer's output and the teacher's softmax
   attention on the same x_l, normalised by the target's mean square (attention transfer,
   as LoLCATs). A step costs one layer, not the model.
2. end to end: the chain model as it stands (earlier conversions included, frozen; the
   prefix below l without gradient) on a smaller batch, L = CE + alpha T^2 KL(teacher ||
   student) + beta * mean over converted layers >= l of MSE(student hidden, teacher
   hidden) / mean square of the teacher's.

Both phases may add gamma * cos(log g_1, log g_2) (`gate_separation`, off by default): the
reference's optional loss that pushes the history and recency gates apart. `history_bias`
starts the first state's gate biases above 0 (the reference's), so it remembers for hundreds of
tokens from the first step instead of the ~24 that a zero bias gives at temperature 16;
`recency_bias` starts the second state's below 0, so it forgets within a few tokens.

Only the current layer's DSLA parameters train (q, o, gates, mixture; k and v are the
teacher's). Before the first step each head's q is rescaled by least squares so the
layer's output matches the teacher's in scale (`Distiller._calibrate`). The reference
weights KL by 0.001; here alpha defaults to 1: minutes of CE on a narrow corpus pull a 135M
model towards that corpus, and the teacher's distribution is what every other text needs.
A fixed bank of training batches keeps the teacher's hidden state at every layer (float16),
so a layer-local step never reruns the prefix.

Devices: `device="cuda"` runs the model, the bank and every step on the GPU (the same command
runs larger there: longer windows, bigger batches, more steps); `precision` "tf32" lets float32
matmuls use TensorFloat-32, "bf16" runs the steps under bfloat16 autocast (the teacher's bank
and targets stay float32; the chunked form's intra-chunk factorisation stays float64 either way).
`save_dtype` stores each step's parameters in a smaller float type (bfloat16 halves a chain that
has to travel; loading casts back to float32).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace

import numpy as np
import torch
import torch.nn.functional as F

from tether.cloud.dsla import gla
from tether.cloud.dsla.chain import Chain, ChainStep, attach
from tether.cloud.lm.attention import rope_tables
from tether.cloud.lm.model import Transformer

__all__ = [
    "RUN_SETTINGS",
    "Bank",
    "DistillConfig",
    "Distiller",
    "check_resume_data",
    "resume_config",
    "single_state_config",
]


@dataclass(frozen=True)
class DistillConfig:
    """Everything a chain's training depends on (stored in its manifest)."""

    n_states: int = 2  # 2 = DSLA, 1 = GLA (the ablation)
    batch_size: int = 4  # sequences per layer-local step
    seq_len: int = 256
    bank_batches: int = 8  # fixed training batches (the teacher's hidden states are kept)
    local_steps: int = 300  # upper bound per layer; the time budget may cut it
    e2e_steps: int = 4
    e2e_batch_size: int = 2
    lr_gates: float = 3e-3  # gates and mixture (new parameters)
    lr_proj: float = 1e-4  # q and o (teacher-initialised)
    e2e_lr_scale: float = 1.0  # the end-to-end phase's learning rates, as a multiple of the above
    lr_min: float = (
        1.0  # each phase's learning rate decays (cosine) to this fraction of its peak (1: constant)
    )
    ce_weight: float = 1.0  # cross-entropy on the corpus (0: match the teacher alone, KL + MSE)
    alpha: float = 1.0  # KL weight
    beta: float = 0.1  # hidden-state MSE weight
    temperature: float = 1.0  # KL temperature T
    history_bias: float = 0.0  # initial bias of the first (history) state's gates: 0 is the reference's;
    # b > 0 starts that state with a memory of about 16 e^b tokens (g = sigmoid(b)^(1/16) at x = 0),
    # which a few hundred steps at lr_gates could not reach from 0
    recency_bias: float = 0.0  # initial bias of the second (recency) state's gates; b < 0 starts it
    # with a short memory (b = -4: g = 0.78 at x = 0, about 5 tokens), so the two states begin apart
    gate_separation: float = 0.0  # weight of the two states' gate cosine similarity (the reference's
    # optional loss that pushes the history and recency gates apart); two states only
    budget_min: float = 110.0  # wall-clock budget of one run of the command (from its start), minutes
    target_fraction: float = 0.8  # the budget is planned to convert this fraction of the layers
    max_layers: int = 0  # stop after this many converted layers (0 = all)
    local_share: float = 0.65  # of a layer's time, for the layer-local phase
    warmup: int = 20  # steps of a layer over which the learning rates ramp up linearly (Adam's first
    # steps move every gate weight by about lr at once: without a ramp the loss spikes)
    e2e_warmup: int = 0  # with e2e_fresh_adam: the end-to-end phase's own ramp, in its steps
    e2e_fresh_adam: bool = False  # a new Adam for the end-to-end phase: the layer-local phase's second
    # moments are scaled to its (small) MSE gradients, so carried over they turn the first end-to-end
    # gradients into steps far larger than the learning rate
    calib_windows: int = 8
    calib_len: int = 512
    chunk: int = 16
    seed: int = 0
    val_batch: int = 1  # held-out windows of seq_len for the per-step perplexity
    device: str = "cpu"  # "cpu" or "cuda" (or "cuda:N")
    precision: str = "fp32"  # "fp32", "tf32" (float32 matmuls in TF32, CUDA) or "bf16" (autocast)
    save_dtype: str = "float32"  # what a chain step's parameters are stored as: float32/bfloat16/float16

    def __post_init__(self) -> None:
        bounds = {
            "n_states": (1, 2),
            "batch_size": (1, 256),
            "seq_len": (8, 65536),
            "bank_batches": (1, 4096),
            "local_steps": (0, 10**7),
            "e2e_steps": (0, 10**7),
            "e2e_batch_size": (1, 256),
            "lr_gates": (0.0, 1.0),
            "lr_proj": (0.0, 1.0),
            "e2e_lr_scale": (0.0, 100.0),
            "lr_min": (0.0, 1.0),
            "ce_weight": (0.0, 1e4),
            "e2e_warmup": (0, 10**6),
            "alpha": (0.0, 1e4),
            "beta": (0.0, 1e4),
            "temperature": (0.01, 100.0),
            "gate_separation": (0.0, 1e4),
            "history_bias": (-20.0, 20.0),
            "recency_bias": (-20.0, 20.0),
            "budget_min": (0.01, 10**6),
            "target_fraction": (0.01, 1.0),
            "max_layers": (0, 10**4),
            "local_share": (0.0, 1.0),
            "warmup": (0, 10**6),
            "calib_windows": (1, 4096),
            "calib_len": (2, 65536),
            "chunk": (1, 1024),
            "val_batch": (1, 4096),
        }
        for name, (lo, hi) in bounds.items():
            value = getattr(self, name)
            if not lo <= value <= hi:
                raise ValueError(f"DistillConfig.{name} must satisfy {lo} <= {name} <= {hi}, but got {value}")
        if self.e2e_batch_size > self.batch_size:
            raise ValueError(
                f"DistillConfig: e2e_batch_size <= batch_size must hold, but got {self.e2e_batch_size} > "
                f"{self.batch_size}; lower e2e_batch_size"
            )
        if self.recency_bias and self.n_states != 2:
            raise ValueError(
                f"DistillConfig.recency_bias starts the second state's gates, but n_states={self.n_states}; "
                "set recency_bias=0 for the single-state ablation"
            )
        if self.gate_separation and self.n_states != 2:
            raise ValueError(
                f"DistillConfig.gate_separation pushes two states' gates apart, but n_states={self.n_states}; "
                "set gate_separation=0 for the single-state ablation"
            )
        choices = {
            "precision": ("fp32", "tf32", "bf16"),
            "save_dtype": ("float32", "bfloat16", "float16"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"DistillConfig.{name} must be one of {allowed}, but got {getattr(self, name)!r}"
                )
        if not (self.device == "cpu" or self.device == "cuda" or self.device.startswith("cuda:")):
            raise ValueError(
                f"DistillConfig.device must be 'cpu', 'cuda' or 'cuda:N', but got {self.device!r}"
            )


@contextlib.contextmanager
def teacher_mode(model: Transformer) -> Iterator[None]:
    """Every layer on softmax attention for the duration (the teacher), then the kinds as they were."""
    saved = [s.active for s in model.slots]
    for s in model.slots:
        s.active = "softmax"
    try:
        yield
    finally:
        for s, k in zip(model.slots, saved, strict=True):
            s.active = k


class Bank:
    """Training batches (N, B, T) and, per batch, the teacher's input of every layer plus its last
    output ((L + 1, B, T, n_embd), float16)."""

    def __init__(self, model: Transformer, batches: torch.Tensor) -> None:
        self.model = model
        device = model.inv_freq.device
        self.tokens = batches.to(device)
        T = batches.shape[-1]
        self.cos, self.sin = rope_tables(torch.arange(T, device=device), model.inv_freq)
        with torch.no_grad(), teacher_mode(model):
            self.teacher = [self._hidden(b) for b in self.tokens]

    def _hidden(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.model.tok_emb(tokens)
        out = []
        for block in self.model.layers:
            out.append(x.half())
            x = block(x, self.cos, self.sin)
        out.append(x.half())
        return torch.stack(out)

    def __len__(self) -> int:
        return len(self.tokens)


def sample_batches(tokens: np.ndarray, n: int, batch: int, T: int, rng: np.random.Generator) -> torch.Tensor:
    """n batches of `batch` random windows of T tokens: (n, batch, T) int64."""
    if len(tokens) < T + 1:
        raise ValueError(f"the corpus has {len(tokens)} tokens; windows of {T} need more")
    starts = rng.integers(0, len(tokens) - T, size=(n, batch))
    return torch.from_numpy(tokens[starts[..., None] + np.arange(T)].astype(np.int64))


class Distiller:
    """Runs the chain in `chain` on `model` (its teacher's weights) until done or out of budget."""

    def __init__(
        self,
        model: Transformer,
        chain: Chain,
        cfg: DistillConfig,
        train_tokens: np.ndarray,
        val_tokens: np.ndarray,
        log: Callable[[str], None] = print,
        fixed_steps: Mapping[int, tuple[int, int]] | None = None,
    ) -> None:
        """`fixed_steps`: per layer, (local, e2e) steps to run whatever the clock says (an ablation
        trained exactly as much as the chain it is compared with); the budget still ends the run."""
        self.model, self.chain, self.cfg, self.log = model, chain, cfg, log
        self.fixed_steps = fixed_steps or {}
        self.device = torch.device(cfg.device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("DistillConfig.device is CUDA, but torch sees no GPU here; use device='cpu'")
        for p in model.parameters():
            p.requires_grad_(False)
        # The second state's gate rows start at nn.Linear's random init: seeded, so that a chain (and a
        # resumed one) is the same for the same seed.
        torch.manual_seed(cfg.seed)
        self.impls = attach(model, cfg.n_states, cfg.chunk)
        for slot in model.slots:  # the chain alone decides which layers are converted
            slot.active = "softmax"
        chain.load_into(model)
        model.to(self.device)  # after attach: the DSLA kinds' k/v (a view of the teacher's) move along
        if cfg.precision == "tf32":
            torch.backends.cuda.matmul.allow_tf32 = True
        rng = np.random.default_rng(cfg.seed)
        self.val = sample_batches(
            val_tokens, 1, cfg.val_batch, cfg.seq_len, np.random.default_rng(cfg.seed + 1)
        )[0].to(self.device)
        t0 = time.perf_counter()
        self.bank = Bank(
            model, sample_batches(train_tokens, cfg.bank_batches, cfg.batch_size, cfg.seq_len, rng)
        )
        self.log(
            f"bank: {cfg.bank_batches} x {cfg.batch_size} x {cfg.seq_len} tokens in {time.perf_counter() - t0:.0f} s"
        )
        self.rng = np.random.default_rng(cfg.seed + 2 + chain.num_converted)

    def _autocast(self) -> contextlib.AbstractContextManager:
        """bfloat16 autocast for the training steps when precision is "bf16", else nothing."""
        if self.cfg.precision != "bf16":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    # --- the chain ------------------------------------------------------------------------------

    def run(
        self, progress: Callable[[int, str], None] | None = None, started: float | None = None
    ) -> list[ChainStep]:
        """Convert layers in order until the chain ends, `max_layers` is reached or the budget runs out.

        `started` (a `time.perf_counter()` value): when the budget began (default: now)."""
        return list(self.run_iter(progress, started))

    def run_iter(
        self, progress: Callable[[int, str], None] | None = None, started: float | None = None
    ) -> Iterator[ChainStep]:
        """`run`, yielding each finished step."""
        cfg, L = self.cfg, self.model.config.n_layer
        start = time.perf_counter() if started is None else started
        deadline = start + cfg.budget_min * 60
        last = L if cfg.max_layers == 0 else min(cfg.max_layers, L)
        target = min(max(math.ceil(cfg.target_fraction * L), 1), last)
        overrun: list[float] = []  # seconds each layer took beyond its share
        while self.chain.num_converted < last:
            left = deadline - time.perf_counter()
            if left <= 0:
                self.log("time budget spent; run the command again to resume the chain")
                break
            n = self.chain.num_converted
            # Plan the rest of the budget over the layers still needed for the target (then the rest),
            # less what a layer costs beyond its share (targets, calibration, the last steps, validation).
            share = left / max((target if n < target else last) - n, 1)
            share = max(share - float(np.median(overrun)) if overrun else share, 0.2 * share)
            layer = self.chain.order[n]
            step = self._convert(layer, share, progress)
            overrun.append(max(step.seconds - share, 0.0))
            self.log(
                f"step {n + 1}/{last}: layer {layer} in {step.seconds:.0f} s ({step.local_steps} local, "
                f"{step.e2e_steps} e2e steps), local loss {_fmt(step.local_loss)}, e2e loss {_fmt(step.e2e_loss)}, "
                f"val ppl {step.val_ppl:.2f}"
            )
            yield step

    def _convert(self, layer: int, seconds: float, progress) -> ChainStep:
        cfg, impl = self.cfg, self.impls[layer]
        local_cap, e2e_cap = cfg.local_steps, cfg.e2e_steps
        fixed = layer in self.fixed_steps
        if fixed:
            local_cap, e2e_cap = self.fixed_steps[layer]  # may wait for the chain it copies
        t0 = time.perf_counter()
        partial = self.chain.load_partial()
        if partial is not None:
            impl.load_state_dict(partial["params"])
        params = dict(impl.named_parameters())
        for p in params.values():
            p.requires_grad_(True)

        def adam(scale: float) -> tuple[torch.optim.Optimizer, list[float]]:
            groups = [
                {"params": [params["wg"], params["bg"], params["mix"]], "lr": cfg.lr_gates * scale},
                {"params": [params["wq"], params["wo"]], "lr": cfg.lr_proj * scale},
            ]
            return torch.optim.Adam(groups), [g["lr"] for g in groups]

        opt, base_lr = adam(1.0)
        state = {"local": 0, "e2e": 0, "local_loss": [], "e2e_loss": [], "elapsed": 0.0}

        def set_lr(progress: float) -> None:
            """Linear warm-up over the first steps, then cosine decay to lr_min of the peak by the phase's
            end (`progress` in [0, 1]: steps done over the cap, or time spent over the phase's share)."""
            if cfg.e2e_fresh_adam and state["e2e"]:
                done, warm = state["e2e"], cfg.e2e_warmup
            else:
                done, warm = state["local"] + state["e2e"], cfg.warmup
            ramp = min(1.0, (done + 1) / warm) if warm else 1.0
            decay = cfg.lr_min + (1 - cfg.lr_min) * 0.5 * (
                1 + math.cos(math.pi * min(max(progress, 0.0), 1.0))
            )
            for g, lr in zip(opt.param_groups, base_lr, strict=True):
                g["lr"] = lr * ramp * decay

        def to_e2e() -> None:
            nonlocal opt, base_lr
            if cfg.e2e_fresh_adam:
                opt, base_lr = adam(cfg.e2e_lr_scale)
            else:
                base_lr = [lr * cfg.e2e_lr_scale for lr in base_lr]

        if partial is not None:
            state.update(partial["state"])
            if state["e2e"]:
                to_e2e()
            opt.load_state_dict(partial["opt"])
            self.log(f"layer {layer}: resumed at {state['local']} local, {state['e2e']} e2e steps")
        t0 -= state["elapsed"]
        local_end = t0 + seconds * cfg.local_share
        end = t0 + seconds
        if fixed:
            local_end = end = math.inf
        last_save = time.perf_counter()

        def checkpoint(force: bool = False) -> None:
            nonlocal last_save
            if force or time.perf_counter() - last_save > 60:
                state["elapsed"] = time.perf_counter() - t0
                self.chain.save_partial(
                    {"layer": layer, "params": impl.state_dict(), "opt": opt.state_dict(), "state": state}
                )
                last_save = time.perf_counter()

        def progress_of(done: int, cap: int, start: float, stop: float) -> float:
            by_steps = done / cap if cap else 1.0
            if fixed or not math.isfinite(stop):
                return by_steps
            return max(by_steps, (time.perf_counter() - start) / max(stop - start, 1e-9))

        if state["local"] < local_cap or partial is None:
            targets = self._local_targets(layer)
            if partial is None:
                hq = impl.n_head * impl.head_dim
                with torch.no_grad():
                    if cfg.history_bias:
                        impl.bg[:hq].fill_(cfg.history_bias)
                    if cfg.recency_bias:
                        impl.bg[hq:].fill_(cfg.recency_bias)
                state["q_scales"] = self._calibrate(layer, targets)
                self.log(f"layer {layer}: q scaled per head by {state['q_scales']}")
            while state["local"] < local_cap and time.perf_counter() < local_end:
                set_lr(progress_of(state["local"], local_cap, t0, local_end))
                loss = self._local_step(layer, targets, opt)
                state["local"] += 1
                _record(state["local_loss"], state["local"], loss)
                if progress:
                    progress(layer, f"local {state['local']} loss {loss:.4f}")
                checkpoint()
            del targets  # the teacher's outputs of every bank batch: not needed end to end
        self.model.slots[layer].active = self.chain.kind
        e2e_start = time.perf_counter()
        if state["e2e"] == 0:
            to_e2e()
        while state["e2e"] < e2e_cap and (time.perf_counter() < end or state["e2e"] == 0):
            set_lr(progress_of(state["e2e"], e2e_cap, e2e_start, end))
            loss = self._e2e_step(layer, opt)
            state["e2e"] += 1
            _record(state["e2e_loss"], state["e2e"], loss)
            if progress:
                progress(layer, f"e2e {state['e2e']} loss {loss:.3f}")
            checkpoint()
        for p in params.values():
            p.requires_grad_(False)
        step = ChainStep(
            layer=layer,
            local_steps=state["local"],
            e2e_steps=state["e2e"],
            seconds=time.perf_counter() - t0,
            local_loss=state["local_loss"],
            e2e_loss=state["e2e_loss"],
            val_ppl=self.val_perplexity(),
        )
        self.chain.add_step(layer, impl, step)
        if self.device.type == "cuda":
            # Hand this layer's cached blocks back: the next layer's end-to-end graph differs in depth,
            # and each distillation sharing one GPU (a chain beside its ablation) would otherwise hold
            # its own highest peak so far (three 2K-window runs on an H200 ran it out of memory).
            torch.cuda.empty_cache()
        return step

    # --- the two phases ------------------------------------------------------------------------

    @torch.no_grad()
    def _local_targets(self, layer: int) -> list[torch.Tensor]:
        """The teacher's softmax attention output on its own input of `layer`, per bank batch."""
        block = self.model.layers[layer]
        teacher = block.attn.impl("softmax")
        out = []
        for h in self.bank.teacher:
            out.append(teacher.forward_dense(block.attn_norm(h[layer].float()), self.bank.cos, self.bank.sin))
        return out

    @torch.no_grad()
    def _calibrate(self, layer: int, targets: list[torch.Tensor], batches: int = 2) -> list[float]:
        """Scale each head's q so the layer's output best matches the teacher's (least squares over
        the heads' contributions): unnormalised linear attention sums scores where softmax averages,
        so at the teacher's q its output is orders of magnitude too large. Returns the scales."""
        impl, block = self.impls[layer], self.model.layers[layer]
        H, d = impl.n_head, impl.head_dim
        gram = torch.zeros(H, H, dtype=torch.float64, device=self.device)
        rhs = torch.zeros(H, dtype=torch.float64, device=self.device)
        for i in range(min(batches, len(self.bank))):
            x = block.attn_norm(self.bank.teacher[i][layer].float())
            q, k, v, log_g = impl._project(x, self.bank.cos, self.bank.sin)
            o, _ = gla.chunked(q, k, v, log_g, chunk=impl.chunk)
            mixed = impl._mix(o).unflatten(-1, (H, d))  # (B, T, H, d)
            # Each head's contribution to the output: (H, B*T*n_embd).
            parts = torch.einsum("bthd,ehd->hbte", mixed, impl.wo.unflatten(1, (H, d))).flatten(1).double()
            gram += parts @ parts.T
            rhs += parts @ targets[i].flatten().double()
        eye = torch.eye(H, dtype=torch.float64, device=self.device)
        scales = torch.linalg.solve(gram + 1e-9 * gram.diagonal().mean() * eye, rhs)
        impl.wq.unflatten(0, (H, d)).mul_(scales.float()[:, None, None])
        return [round(float(s), 6) for s in scales]

    def _local_step(self, layer: int, targets: list[torch.Tensor], opt: torch.optim.Optimizer) -> float:
        i = int(self.rng.integers(len(self.bank)))
        block = self.model.layers[layer]
        with torch.no_grad():
            x = block.attn_norm(self.bank.teacher[i][layer].float())
        impl = self.impls[layer]
        with self._autocast():
            y = impl.forward_dense(x, self.bank.cos, self.bank.sin)
        target = targets[i]
        loss = F.mse_loss(y.float(), target) / target.pow(2).mean()
        if self.cfg.gate_separation:
            loss = loss + self.cfg.gate_separation * impl.gate_similarity(x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.detach().item()

    def _e2e_step(self, layer: int, opt: torch.optim.Optimizer) -> float:
        cfg, model = self.cfg, self.model
        i = int(self.rng.integers(len(self.bank)))
        rows = torch.from_numpy(self.rng.choice(cfg.batch_size, cfg.e2e_batch_size, replace=False))
        rows = rows.to(self.device)
        tokens = self.bank.tokens[i][rows]
        teacher_h = self.bank.teacher[i][:, rows]  # (L + 1, b, T, E)
        with self._autocast():
            with torch.no_grad():  # the chain's prefix below the layer, earlier conversions included
                x = model.tok_emb(tokens)
                for block in model.layers[:layer]:
                    x = block(x, self.bank.cos, self.bank.sin)
            converted = set(self.chain.converted) | {layer}
            mse = []
            separation = (
                self.impls[layer].gate_similarity(model.layers[layer].attn_norm(x))
                if cfg.gate_separation
                else None
            )
            for j in range(layer, model.config.n_layer):
                x = model.layers[j](x, self.bank.cos, self.bank.sin)
                if j in converted:
                    target = teacher_h[j + 1].float()
                    mse.append(F.mse_loss(x.float(), target) / target.pow(2).mean())
            logits = F.linear(model.norm(x), model.output_weight)[:, :-1].float()  # (b, T - 1, V)
        with torch.no_grad():
            t_logits = F.linear(model.norm(teacher_h[-1].float()), model.output_weight)[:, :-1]
        ce = (
            F.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())
            if cfg.ce_weight
            else logits.new_zeros(())
        )
        T = cfg.temperature
        kl = F.kl_div(
            F.log_softmax(logits / T, -1).flatten(0, 1),
            F.log_softmax(t_logits / T, -1).flatten(0, 1),
            log_target=True,
            reduction="batchmean",
        )
        loss = cfg.ce_weight * ce + cfg.alpha * T * T * kl + cfg.beta * torch.stack(mse).mean()
        if separation is not None:
            loss = loss + cfg.gate_separation * separation
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.detach().item()

    @torch.no_grad()
    def val_perplexity(self) -> float:
        """Perplexity of the chain model as it stands on the held-out batch (float32, no autocast)."""
        model, T = self.model, self.val.shape[1]
        cos, sin = rope_tables(torch.arange(T, device=self.device), model.inv_freq)
        nll = 0.0
        for row in self.val:  # one window at a time: (T, vocab) logits, not (B, T, vocab)
            x = model.tok_emb(row[None])
            for block in model.layers:
                x = block(x, cos, sin)
            logits = F.linear(model.norm(x[0, :-1]), model.output_weight)
            nll += float(F.cross_entropy(logits, row[1:], reduction="sum"))
        return math.exp(nll / (self.val.shape[0] * (T - 1)))


def _record(losses: list, step: int, loss: float) -> None:
    """Keep a sparse loss curve of [step, loss]: every step at first, then every 10th, then every 25th."""
    if step <= 10 or (step <= 100 and step % 10 == 0) or step % 25 == 0:
        losses.append([step, round(loss, 5)])


def _fmt(losses: list) -> str:
    return f"{losses[0][1]:.4g} -> {losses[-1][1]:.4g}" if losses else "-"


def config_dict(cfg: DistillConfig) -> dict:
    return asdict(cfg)


# What one run of the distiller may change on a chain it resumes: how long and where it runs, and
# the float type of the step files it writes. Every other setting shapes the layers it trains.
RUN_SETTINGS = frozenset({"budget_min", "target_fraction", "max_layers", "device", "precision", "save_dtype"})


def resume_config(
    cfg: DistillConfig, settings: Mapping, given: Collection[str] | None = None
) -> DistillConfig:
    """The settings to resume a chain with, whose manifest recorded `settings` when it was made:
    `cfg` with every setting outside RUN_SETTINGS and `given` (the ones the caller chose; None: all
    of them) taken from the chain, so that each layer of a chain is trained alike. A chosen setting
    that differs from the chain's raises ValueError naming each one with both values. A setting the
    chain did not record (made before it existed) keeps `cfg`'s value."""
    known = {f.name for f in fields(DistillConfig)} - RUN_SETTINGS
    chosen = known if given is None else known & set(given)
    recorded = {k: settings[k] for k in known if k in settings}
    clashes = [
        f"{k}={recorded[k]!r} (this run: {getattr(cfg, k)!r})"
        for k in sorted(chosen & recorded.keys())
        if recorded[k] != getattr(cfg, k)
    ]
    if clashes:
        raise ValueError(
            "a chain keeps the settings it was made with, but it was made with " + ", ".join(clashes)
        )
    return replace(cfg, **{k: v for k, v in recorded.items() if k not in chosen})


def check_resume_data(settings: Mapping, sources: Sequence[str], train_tokens: int) -> None:
    """Raise ValueError when a chain whose manifest recorded `settings` was trained on other tokens
    than a run that reads `train_tokens` training tokens from `sources`: each layer of a chain
    learns from the same data. A chain that recorded neither (made before they were) passes."""
    clashes = []
    if "sources" in settings and list(settings["sources"]) != list(sources):
        clashes.append(f"sources {list(settings['sources'])} (this run: {list(sources)})")
    if "train_tokens" in settings and int(settings["train_tokens"]) != int(train_tokens):
        clashes.append(f"{settings['train_tokens']} training tokens (this run: {train_tokens})")
    if clashes:
        raise ValueError(
            "a chain keeps the tokens it was made with, but it was made with " + ", ".join(clashes)
        )


def single_state_config(settings: dict, layers: int) -> DistillConfig:
    """The settings of the single-state chain that pairs with a DSLA chain at equal steps: the DSLA
    chain's own (its manifest's `settings`), one state, neither the second state's start nor the
    loss that separates two states' gates, `layers` layers, and a budget that never cuts the steps
    that `--steps-from` copies."""
    known = {f.name for f in fields(DistillConfig)}
    kept = {k: v for k, v in settings.items() if k in known}
    return DistillConfig(
        **kept
        | {
            "n_states": 1,
            "recency_bias": 0.0,
            "gate_separation": 0.0,
            "max_layers": layers,
            "budget_min": 1e6,
        }
    )
