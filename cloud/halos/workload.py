"""HALoS's training workload (arXiv 2506.04531 trains Pythia on the Pile; here a byte-level GPT on the
Gutenberg Shakespeare corpus): data sampling per worker, model construction, held-out evaluation.
"""

from __future__ import annotations

import numpy as np
import torch

from tether.cloud.data import gutenberg
from tether.cloud.halos.config import WorkloadConfig
from tether.cloud.halos.model import TinyGPT, get_flat, set_flat

__all__ = ["LMTask"]

_VAL_SEED = 20250604  # the evaluation windows are the same for every method, seed and run


class LMTask:
    """Next-byte prediction: train windows from the training plays, validation from held-out plays."""

    def __init__(self, cfg: WorkloadConfig, corpus: gutenberg.Corpus | None = None) -> None:
        self.cfg = cfg
        torch.set_num_threads(cfg.threads)
        self.device = torch.device(cfg.resolved_device())
        corpus = corpus if corpus is not None else gutenberg.load()
        self.train_tokens = corpus.tokens("train")  # (N_train,) uint8
        val_tokens = corpus.tokens("val")
        t = cfg.model.seq_len
        x, y = gutenberg.windows(val_tokens, cfg.val_windows, t, np.random.default_rng(_VAL_SEED))
        self._val = (torch.from_numpy(x).to(self.device), torch.from_numpy(y).to(self.device))  # (V, T) each
        self._eval_model = self.new_model(0)
        self.n_params = sum(p.numel() for p in self._eval_model.parameters())
        self.n_bytes = 4 * self.n_params  # float32 on the wire

    def new_model(self, seed: int) -> TinyGPT:
        """A freshly initialised model; the same seed gives the same weights."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return TinyGPT(self.cfg.model).to(self.device)

    def batch(
        self, rng: np.random.Generator, n_sequences: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A training batch of random windows: (x, y), each (B, T) int64, y shifted by one byte."""
        b = self.cfg.batch_size if n_sequences is None else n_sequences
        x, y = gutenberg.windows(self.train_tokens, b, self.cfg.model.seq_len, rng)
        return torch.from_numpy(x).to(self.device), torch.from_numpy(y).to(self.device)

    def init_theta(self, seed: int) -> torch.Tensor:
        """The flat initial parameters (P,) every method of a run starts from."""
        return get_flat(self.new_model(seed))

    @torch.no_grad()
    def evaluate(self, theta: torch.Tensor, chunk: int = 128) -> float:
        """Mean next-byte cross-entropy (nats) of parameters `theta` (P,) on the fixed validation windows."""
        model = self._eval_model
        set_flat(model, theta)
        model.eval()
        x, y = self._val
        total = 0.0
        for i in range(0, len(x), chunk):
            total += float(model(x[i : i + chunk], y[i : i + chunk])) * len(x[i : i + chunk])
        return total / len(x)
