"""The tiny random Llama of the LM and DSLA tests: 3 layers, grouped-query attention (4 query heads on 2
KV heads), the byte-level tokenizer's vocabulary."""

from __future__ import annotations

from tether.cloud.lm import ModelConfig

TINY = ModelConfig(
    vocab_size=259,
    n_layer=3,
    n_embd=64,
    n_head=4,
    n_kv_head=2,
    head_dim=16,
    ffn_dim=128,
    context_len=512,
    tie_embeddings=False,
)
