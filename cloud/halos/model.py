"""A small GPT (Radford et al. 2019, pre-norm decoder) trained from scratch on bytes: HALoS's workload.

Shapes: B batch, T sequence, C = d_model, nh heads, hs = C / nh. The output head shares the token
embedding, so the parameter vector that servers exchange holds it once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tether.cloud.halos.config import ModelConfig

__all__ = ["TinyGPT", "get_flat", "set_flat"]


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
