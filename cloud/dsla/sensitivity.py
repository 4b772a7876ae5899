"""Conversion orders: the reference's sensitivity order, and an order measured on distilled layers.

Sensitivity order (DSLA, arXiv 2506.09316), used to distil: per layer, the entropy of the last
token's softmax attention row, averaged over heads and over calibration windows; low entropy
first. The teacher runs once over each window; each layer's row is recomputed from its input.

Measured order (ours), used to serve: entropy predicts a layer's cost badly. On the 26-layer
SmolLM2 chain, layers 20, 23 and 24 (14th, 7th and 8th in entropy order) each raised the chain's
validation perplexity by 15-50%, while most others cost under 3%. Once layers are distilled, each
one's real cost is measurable: the KL divergence from the teacher's next-token distribution with
that layer alone converted, on calibration windows of the distillation corpus (never the held-out
texts the benchmark scores). Serving converts the cheapest first, so any conversion level keeps
the least harmful layers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from tether.cloud.lm.attention import SoftmaxAttention, rope_tables
from tether.cloud.lm.model import Transformer

__all__ = ["conversion_costs", "last_row_entropy", "leading_order", "measured_order", "sensitivity_order"]


@torch.no_grad()
def last_row_entropy(model: Transformer, windows: torch.Tensor) -> list[float]:
    """Mean entropy (nats) of the last token's attention row, per layer: windows (W, T) token ids."""
    cfg = model.config
    T = windows.shape[1]
    cos, sin = rope_tables(torch.arange(T), model.inv_freq)
    totals = [0.0] * cfg.n_layer
    for w in windows:
        _, hidden = model(w[None], return_hidden=True)
        for layer, block in enumerate(model.layers):
            attn = block.attn.impl("softmax")
            if not isinstance(attn, SoftmaxAttention):
                raise TypeError(f"layer {layer}: the 'softmax' kind must be SoftmaxAttention")
            q, k, _ = attn._qkv(block.attn_norm(hidden[layer][0]), cos, sin)  # (T, H, d), (T, kvh, d)
            k = k.repeat_interleave(attn.group, dim=1)
            scores = torch.einsum("hd,thd->ht", q[-1], k) * attn.scale  # (H, T): the last query's row
            p = scores.softmax(-1)
            entropy = -(p * p.clamp_min(1e-30).log()).sum(-1)  # (H,)
            totals[layer] += float(entropy.mean())
    return [t / len(windows) for t in totals]


def sensitivity_order(entropy: list[float]) -> list[int]:
    """Layers by increasing entropy (ties by layer index): the conversion order."""
    return sorted(range(len(entropy)), key=lambda i: (entropy[i], i))


def leading_order(first: Sequence[int], entropy: list[float]) -> list[int]:
    """`first` in the order given, then the other layers in sensitivity order: a chain distilled in
    an order measured elsewhere (a serving order written down from an earlier chain's
    `tether dsla order`), so each layer trains with the layers served before it converted."""
    n = len(entropy)
    bad = [layer for layer in first if not 0 <= layer < n]
    if bad:
        raise ValueError(f"layers must satisfy 0 <= layer < {n}, but got {bad}; list layers of this model")
    twice = sorted({layer for layer in first if list(first).count(layer) > 1})
    if twice:
        raise ValueError(f"each layer may come once in the order, but {twice} repeat; drop the repeats")
    rest = [layer for layer in sensitivity_order(entropy) if layer not in first]
    return list(first) + rest


@torch.no_grad()
def conversion_costs(
    model: Transformer,
    kind: str,
    layers: Sequence[int],
    windows: torch.Tensor,
    progress: Callable[[int, float], None] | None = None,
) -> dict[int, float]:
    """Per layer of `layers`: the mean KL(teacher || model) in nats per token over `windows` (W, T)
    with only that layer in `kind` (its parameters already loaded). The model's active kinds are
    restored afterwards."""
    saved = [slot.active for slot in model.slots]
    try:
        for slot in model.slots:
            slot.active = "softmax"
        # Per window, the teacher's probabilities and their negative entropy sum(p log p) per position,
        # once: KL(p || q) = sum(p log p) - sum(p log q).
        teacher = []
        for w in windows:
            t_logp = F.log_softmax(model(w[None])[0].float(), -1)
            p = t_logp.exp()
            teacher.append((p, (p * t_logp).sum(-1)))
        costs: dict[int, float] = {}
        for layer in layers:
            model.slots[layer].active = kind
            kl = 0.0
            for w, (p, neg_entropy) in zip(windows, teacher, strict=True):
                logq = F.log_softmax(model(w[None])[0].float(), -1)
                kl += float((neg_entropy - (p * logq).sum(-1)).mean())
            model.slots[layer].active = "softmax"
            costs[layer] = kl / len(windows)
            if progress is not None:
                progress(layer, costs[layer])
        return costs
    finally:
        for slot, active in zip(model.slots, saved, strict=True):
            slot.active = active


def measured_order(costs: dict[int, float]) -> list[int]:
    """Layers by increasing measured cost (ties by layer index): the serving order."""
    return sorted(costs, key=lambda layer: (costs[layer], layer))
