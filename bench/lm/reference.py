"""transformers' own reading of the embedded GGUF: the reference for the logits test and the baselines.

`AutoModelForCausalLM.from_pretrained(dir, gguf_file=...)` dequantises the GGUF file itself
(about 15 s on 2 cores); its result is saved once as safetensors under the artefacts folder,
keyed by the file's size and mtime and the transformers version, and later loads take ~2 s.
transformers is a dev/benchmark dependency only: the runtime never imports it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from tether.cloud.lm.checkpoint import default_model_path
from tether.settings import settings

__all__ = ["hf_reference", "hf_reference_folder"]


def hf_reference_folder(gguf: Path | None = None) -> Path:
    """The cached conversion (config.json, model.safetensors, tokenizer files), made on first use."""
    import transformers
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = gguf or default_model_path()
    st = gguf.stat()
    key = f"{gguf.stem}-{st.st_size}-{int(st.st_mtime)}-transformers-{transformers.__version__}"
    folder = settings().artefact_dir("lm", "hf_reference") / key
    if not (folder / "config.json").is_file():
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        tmp = folder.with_name(f"{folder.name}.tmp{os.getpid()}")
        tmp.mkdir(parents=True, exist_ok=True)
        # transformers refuses save_pretrained on a model it read from GGUF (flagged as quantised,
        # though its weights are float32 by now): write the config without that flag, and the
        # weights with safetensors (save_model drops the tied lm_head copy).
        config = model.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.save_pretrained(tmp)
        save_model(model, str(tmp / "model.safetensors"))
        tok.save_pretrained(tmp)
        try:
            tmp.rename(folder)  # atomic: a parallel worker may have won the race, then keep theirs
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def hf_reference(gguf: Path | None = None):
    """(model, tokenizer) of transformers for the GGUF file (default: the embedded SmolLM2), float32, eval."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = hf_reference_folder(gguf)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(folder)
