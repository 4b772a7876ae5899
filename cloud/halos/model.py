"""A small GPT (Radford et al. 2019, pre-norm decoder) trained from scratch on bytes: HALoS's workload.

Shapes: B batch, T sequence, C = d_model, nh heads, hs = C / nh, k replicas. The output head shares
the token embedding, so the parameter vector that servers exchange holds it once. `replica_loss` is
the same network evaluated for k flat parameter vectors at once (one batched op per layer), so the
simulator can step many workers' replicas together; a test holds it equal to `TinyGPT.forward`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tether.cloud.halos.config import ModelConfig

__all__ = ["ParamLayout", "TinyGPT", "get_flat", "replica_loss", "set_flat"]


class _Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        c = cfg.d_model
        self.n_head = cfg.n_head
        self.ln_1 = nn.LayerNorm(c)
        self.qkv = nn.Linear(c, 3 * c)
        self.proj = nn.Linear(c, c)
        self.ln_2 = nn.LayerNorm(c)
        self.fc = nn.Linear(c, 4 * c)
        self.fc_out = nn.Linear(4 * c, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln_1(x)).split(c, dim=2)
        # (B, nh, T, hs)
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, c))
        return x + self.fc_out(F.gelu(self.fc(self.ln_2(x))))


class TinyGPT(nn.Module):
    """Byte-level GPT: `forward(idx, targets)` returns the mean next-byte cross-entropy (nats)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.wpe = nn.Embedding(cfg.seq_len, cfg.d_model)
        self.blocks = nn.ModuleList(_Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.head.weight = self.wte.weight  # tied
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                # GPT-2: residual projections scaled down by depth
                std = (
                    0.02 / (2 * cfg.n_layer) ** 0.5
                    if name.endswith(("proj.weight", "fc_out.weight"))
                    else 0.02
                )
                nn.init.normal_(p, 0.0, std)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        _, t = idx.shape  # (B, T) int64
        x = self.wte(idx) + self.wpe(torch.arange(t, device=idx.device))  # (B, T, C)
        for block in self.blocks:
            x = block(x)
        logits = self.head(self.ln_f(x))  # (B, T, vocab)
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))

    def decay_groups(self, weight_decay: float) -> list[dict]:
        """AdamW groups: matrices decay, biases and norms do not (as the reference)."""
        params = list(self.parameters())
        return [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ]


def get_flat(model: nn.Module) -> torch.Tensor:
    """The model's parameters as one new flat float32 vector (P,)."""
    return torch.nn.utils.parameters_to_vector(model.parameters()).detach().clone()


@torch.no_grad()
def set_flat(model: nn.Module, theta: torch.Tensor) -> None:
    """Copy a flat vector (P,) into the model's parameters (a copy: the model never aliases `theta`)."""
    offset = 0
    for p in model.parameters():
        n = p.numel()
        p.copy_(theta[offset : offset + n].view_as(p))
        offset += n
    if offset != theta.numel():
        raise ValueError(f"a flat vector of {offset} parameters is needed, but got {theta.numel()}")


@dataclass(frozen=True)
class ParamLayout:
    """Where each parameter of a `TinyGPT` sits in its flat vector (the order of `parameters()`)."""

    cfg: ModelConfig
    slots: tuple[tuple[str, int, tuple[int, ...]], ...]  # (name, offset, shape)
    n_params: int
    decay_mask: torch.Tensor  # (P,) 1.0 where AdamW decays (matrices), 0.0 elsewhere

    @classmethod
    def of(cls, model: TinyGPT) -> ParamLayout:
        slots, offset, mask = [], 0, []
        for name, p in model.named_parameters():  # the tied head is listed once, as wte.weight
            slots.append((name, offset, tuple(p.shape)))
            mask.append(torch.full((p.numel(),), 1.0 if p.dim() >= 2 else 0.0))
            offset += p.numel()
        return cls(model.cfg, tuple(slots), offset, torch.cat(mask))

    def views(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-parameter views (k, *shape) of flat vectors `theta` (k, P)."""
        k = theta.shape[0]
        return {n: theta[:, o : o + math.prod(s)].view(k, *s) for n, o, s in self.slots}


def _layer_norm(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # x (k, N, C); w, b (k, C): nn.LayerNorm with each replica's own affine
    return F.layer_norm(x, x.shape[-1:]) * w[:, None, :] + b[:, None, :]


def _linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # x (k, N, in); w (k, out, in); b (k, out) -> (k, N, out)
    return torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))


def replica_loss(
    theta: torch.Tensor | dict[str, torch.Tensor],
    layout: ParamLayout,
    idx: torch.Tensor,
    targets: torch.Tensor,
) -> torch.Tensor:
    """Mean next-byte cross-entropy of k replicas: `theta` (k, P) or its `layout.views`, `idx`/`targets`
    (k, B, T) -> (k,).

    Replica r sees only its own batch, so d(loss.sum())/d(theta[r]) is replica r's own gradient.
    """
    cfg = layout.cfg
    p = layout.views(theta) if isinstance(theta, torch.Tensor) else theta
    k, b, t = idx.shape
    c, nh, v = cfg.d_model, cfg.n_head, cfg.vocab_size
    wte = p["wte.weight"]  # (k, V, C)
    offsets = (torch.arange(k, device=idx.device) * v).view(k, 1, 1)  # replica r's table in the stack
    x = F.embedding((idx + offsets).view(k, b * t), wte.reshape(k * v, c))  # (k, B*T, C)
    x = x + p["wpe.weight"][:, :t].repeat(1, b, 1)
    for i in range(cfg.n_layer):
        q = f"blocks.{i}."
        h = _linear(
            _layer_norm(x, p[q + "ln_1.weight"], p[q + "ln_1.bias"]), p[q + "qkv.weight"], p[q + "qkv.bias"]
        )
        # (k*B, nh, T, hs)
        qs, ks, vs = (z.reshape(k * b, t, nh, c // nh).transpose(1, 2) for z in h.split(c, dim=2))
        y = F.scaled_dot_product_attention(qs, ks, vs, is_causal=True).transpose(1, 2).reshape(k, b * t, c)
        x = x + _linear(y, p[q + "proj.weight"], p[q + "proj.bias"])
        h = _linear(
            _layer_norm(x, p[q + "ln_2.weight"], p[q + "ln_2.bias"]), p[q + "fc.weight"], p[q + "fc.bias"]
        )
        x = x + _linear(F.gelu(h), p[q + "fc_out.weight"], p[q + "fc_out.bias"])
    logits = torch.bmm(_layer_norm(x, p["ln_f.weight"], p["ln_f.bias"]), wte.transpose(1, 2))  # (k, B*T, V)
    per_byte = F.cross_entropy(logits.reshape(-1, v), targets.reshape(-1), reduction="none")
    return per_byte.view(k, b * t).mean(dim=1)
