"""The embedded SmolLM2 against transformers' own GGUF loading of the same file: tokens, logits, greedy text.

transformers dequantises the GGUF itself and undoes llama.cpp's q/k permutation its own way; our
loader must agree to 1e-3 in float32 (the dense forward, and the paged engine path token by
token), and 64-token greedy generations must be identical. The converted reference is cached
under the artefacts folder (tether.bench.lm.reference), so only the first run pays ~15 s.
"""

from __future__ import annotations

import pytest
import torch

from tether.cloud.lm import CacheConfig, EngineConfig, LLMEngine, SamplingParams

CHAT = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "You answer in one word."}, {"role": "user", "content": "Name a colour."}],
]
RAW = ["def fibonacci(n):\n    ", "Once upon a time, in a land far away, 1234 dragons"]
TEXTS = [
    "Hello world",
    "  spaces\tand\ttabs\n\nnew lines",
    "numbers 1234567 and 3.14159",
    "émoji 🙂 and ünïcode",
    "<|im_start|>user\nhi<|im_end|>",
    "it's we'll they've I'M",
]


@pytest.fixture(scope="module")
def hf():
    from tether.bench.lm.reference import hf_reference

    return hf_reference()


def _prompts(tok):
    return [tok.encode(tok.apply_chat_template(m)) for m in CHAT] + [tok.encode(t) for t in RAW]


def test_tokenizer_and_template_match_transformers(smollm, hf) -> None:
    _, tok, _ = smollm
    _, hf_tok = hf
    for text in TEXTS + RAW:
        assert tok.encode(text) == hf_tok(text, add_special_tokens=False).input_ids, text
        assert tok.decode(tok.encode(text)) == text.replace("<|im_start|>", "").replace("<|im_end|>", "")
    for messages in CHAT:
        assert tok.apply_chat_template(messages) == hf_tok.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )


def test_logits_match_transformers(smollm, hf) -> None:
    model, tok, _ = smollm
    hf_model, _ = hf
    with torch.inference_mode():
        for ids in _prompts(tok):
            ours = model(torch.tensor([ids]))[0]
            ref = hf_model(torch.tensor([ids])).logits[0]
            assert (ours - ref).abs().max().item() <= 1e-3


def test_paged_engine_path_matches_transformers_token_by_token(smollm, hf) -> None:
    """Prefill in two chunks, then decode teacher-forced tokens through the paged cache."""
    model, tok, name = smollm
    hf_model, _ = hf
    engine = LLMEngine(
        model, tok, EngineConfig(threads=1, cache=CacheConfig(prefix_caching=False)), name=name
    )
    cache = engine.cache
    ids = _prompts(tok)[0]
    with torch.inference_mode():
        ref = hf_model(torch.tensor([ids])).logits[0]  # logits after every prefix
        seq = cache.new_sequence(0, ids)
        cut = len(ids) // 2
        for start, end in ((0, cut), (cut, len(ids) - 8)) + tuple(
            (p, p + 1) for p in range(len(ids) - 8, len(ids))
        ):
            cache.append_slots(seq, end - start)
            step = cache.prepare_step([seq], [ids[start:end]], num_decode=int(end - start == 1))
            logits = model.forward_step(step)[0]
            cache.commit(seq, end - start, ids)
            assert (logits - ref[end - 1]).abs().max().item() <= 1e-3, (start, end)
    cache.free(0)
    assert cache.usage().kv_blocks_used == 0


def test_greedy_64_tokens_identical_to_transformers_generate(smollm, hf) -> None:
    model, tok, name = smollm
    hf_model, _ = hf
    prompts = _prompts(tok)[1:]  # a chat answer that ends with EOS, two raw prompts that run the full 64
    engine = LLMEngine(model, tok, EngineConfig(threads=1), name=name)
    ours = engine.generate(prompts, SamplingParams(temperature=0.0, max_tokens=64))  # batched together
    assert [o.completion_tokens for o in ours][1:] == [64, 64]
    for ids, out in zip(prompts, ours, strict=True):
        # One transformers call per prompt, unpadded: its reference greedy path (a left-padded batch
        # was measured no faster on one thread: its per-step cost grows with the rows).
        with torch.inference_mode():
            ref = hf_model.generate(
                torch.tensor([ids]),
                attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                max_new_tokens=64,
                do_sample=False,
                pad_token_id=2,
            )
        assert out.token_ids == ref[0, len(ids) :].tolist()


def test_a_safetensors_checkpoint_named_by_the_setting_loads_the_same_model(smollm, hf, monkeypatch) -> None:
    """The transformers conversion is itself a Hugging Face folder: lm_model pointing at it must give our
    model the same weights and tokenizer as the GGUF route."""
    import importlib

    from tether.bench.lm.reference import hf_reference_folder
    from tether.cloud.lm import Transformer, load_checkpoint

    model, tok, _ = smollm
    folder = hf_reference_folder()
    monkeypatch.setattr(
        importlib.import_module("tether.settings"), "_current", None
    )  # re-read the environment
    monkeypatch.setenv("TETHER_LM_MODEL", str(folder))
    ckpt = load_checkpoint()
    assert ckpt.path == folder and ckpt.config.rope_base == 1e5 and ckpt.config.tie_embeddings
    other = Transformer.from_checkpoint(ckpt)
    ids = _prompts(tok)[0]
    assert ckpt.tokenizer.encode(RAW[1]) == tok.encode(RAW[1]) and ckpt.tokenizer.eos_ids[0] == 2
    assert ckpt.tokenizer.apply_chat_template(CHAT[0]) == tok.apply_chat_template(CHAT[0])
    with torch.inference_mode():
        assert (other(torch.tensor([ids])) - model(torch.tensor([ids]))).abs().max().item() <= 1e-5
