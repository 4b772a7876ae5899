"""The sensitivity order of DSLA (arXiv 2506.09316): convert the layers whose attention is least spread first.

Per layer, the entropy of the last token's softmax attention row, averaged over heads and
over calibration windows; low entropy first (the reference's order). The teacher runs once
over each window; each layer's row is recomputed from that layer's input.
"""

from __future__ import annotations

import torch

from tether.cloud.lm.attention import SoftmaxAttention, rope_tables
from tether.cloud.lm.model import Transformer

__all__ = ["last_row_entropy", "sensitivity_order"]


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
