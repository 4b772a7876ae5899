"""The tokenizer and chat template of a checkpoint, built with `tokenizers` from GGUF metadata or tokenizer.json.

GGUF keeps a byte-level BPE (`tokenizer.ggml.model = "gpt2"`) as its vocabulary, merges and
token types, plus a pre-tokenizer name (`tokenizer.ggml.pre`) that llama.cpp maps onto a
split regex; we map the same names onto `tokenizers` pre-tokenizers. The chat template is
the checkpoint's Jinja template, rendered in a sandbox. `StreamDecoder` turns a growing list
of token ids into text deltas for streaming, holding back incomplete UTF-8 sequences.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["StreamDecoder", "Tokenizer", "TokenizerError"]

# Llama 3's split regex (llama.cpp "llama-bpe"): contractions, letters, 1-3 digits, punctuation, spaces.
_LLAMA3_SPLIT = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
_CONTROL = 3  # GGUF token type of control tokens (<|im_start|> ...): matched whole in text, never split
_USER_DEFINED = 4


class TokenizerError(ValueError):
    """The checkpoint's tokenizer cannot be built; the message says which field and what is supported."""


class Tokenizer:
    """Encode, decode and apply the chat template. Thread-safe (the Rust tokenizer is)."""

    def __init__(
        self,
        backend: Any,
        *,
        bos_id: int | None,
        eos_ids: Sequence[int],
        add_bos: bool,
        chat_template: str | None,
        special_ids: Sequence[int] = (),
    ) -> None:
        self.backend = backend
        self.bos_id = bos_id
        self.eos_ids = tuple(dict.fromkeys(eos_ids))  # ordered, unique
        self.add_bos = add_bos
        self.chat_template = chat_template
        self.special_ids = frozenset(special_ids)
        self._template = None

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    # --- construction ---------------------------------------------------------------------

    @classmethod
    def from_gguf_metadata(cls, fields: dict[str, Any], *, source: str = "gguf") -> Tokenizer:
        """From the `tokenizer.*` GGUF fields (values as Python str, int, float, bool, list)."""
        from tokenizers import AddedToken, decoders, models, pre_tokenizers
        from tokenizers import Tokenizer as Backend

        kind = fields.get("tokenizer.ggml.model")
        if kind != "gpt2":
            raise TokenizerError(
                f"{source}: tokenizer.ggml.model must be 'gpt2' (byte-level BPE), but got {kind!r}; "
                "for a SentencePiece model use a safetensors folder with tokenizer.json"
            )
        tokens: list[str] = list(fields["tokenizer.ggml.tokens"])
        types: list[int] = list(fields.get("tokenizer.ggml.token_type", [1] * len(tokens)))
        merges = [tuple(m.split(" ", 1)) for m in fields.get("tokenizer.ggml.merges", [])]
        vocab = {tok: i for i, tok in enumerate(tokens)}
        backend = Backend(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
        pre = fields.get("tokenizer.ggml.pre", "default")
        byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        if pre in ("default", "gpt2", "gpt-2", "starcoder", "refact"):
            backend.pre_tokenizer = byte_level
        elif pre == "smollm":  # llama.cpp: every digit on its own, then GPT-2's regex
            backend.pre_tokenizer = pre_tokenizers.Sequence(
                [pre_tokenizers.Digits(individual_digits=True), byte_level]
            )
        elif pre in ("llama-bpe", "llama3", "smaug-bpe"):
            from tokenizers import Regex

            backend.pre_tokenizer = pre_tokenizers.Sequence(
                [
                    pre_tokenizers.Split(Regex(_LLAMA3_SPLIT), behavior="isolated"),
                    pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
                ]
            )
        else:
            raise TokenizerError(
                f"{source}: tokenizer.ggml.pre {pre!r} is not supported; supported: default, gpt2, smollm, "
                "llama-bpe; or use a safetensors folder with tokenizer.json"
            )
        backend.decoder = decoders.ByteLevel()
        special = [i for i, t in enumerate(types) if t in (_CONTROL, _USER_DEFINED)]
        backend.add_special_tokens([AddedToken(tokens[i], special=True, normalized=False) for i in special])
        bos = fields.get("tokenizer.ggml.bos_token_id")
        eos = fields.get("tokenizer.ggml.eos_token_id")
        eot = fields.get("tokenizer.ggml.eot_token_id")
        eos_ids = [int(x) for x in (eos, eot) if x is not None]
        if "<|endoftext|>" in vocab:
            eos_ids.append(vocab["<|endoftext|>"])
        return cls(
            backend,
            bos_id=None if bos is None else int(bos),
            eos_ids=eos_ids,
            add_bos=bool(fields.get("tokenizer.ggml.add_bos_token", False)),
            chat_template=fields.get("tokenizer.chat_template"),
            special_ids=special,
        )

    @classmethod
    def byte_level(cls) -> Tokenizer:
        """A 259-token byte-level tokenizer with no merges and a ChatML template (tests, random models):
        ids 0-2 are <|endoftext|>, <|im_start|>, <|im_end|> (the EOS), then the 256 bytes."""
        from tokenizers import pre_tokenizers

        tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", *sorted(pre_tokenizers.ByteLevel.alphabet())]
        template = (
            "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
            "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
        )
        return cls.from_gguf_metadata(
            {
                "tokenizer.ggml.model": "gpt2",
                "tokenizer.ggml.tokens": tokens,
                "tokenizer.ggml.token_type": [3, 3, 3] + [1] * 256,
                "tokenizer.ggml.merges": [],
                "tokenizer.ggml.eos_token_id": 2,
                "tokenizer.chat_template": template,
            },
            source="byte_level",
        )

    @classmethod
    def from_hf_folder(cls, folder: Path) -> Tokenizer:
        """From tokenizer.json (and tokenizer_config.json for the template and special tokens)."""
        from tokenizers import Tokenizer as Backend

        tj = folder / "tokenizer.json"
        if not tj.is_file():
            raise TokenizerError(f"{folder}: tokenizer.json is missing; the safetensors loader needs it")
        backend = Backend.from_file(str(tj))
        cfg_path = folder / "tokenizer_config.json"
        cfg = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}

        def tok_id(v: Any) -> int | None:
            if isinstance(v, dict):
                v = v.get("content")
            return None if v is None else backend.token_to_id(v)

        gen_path = folder / "generation_config.json"
        gen = json.loads(gen_path.read_text()) if gen_path.is_file() else {}
        eos = gen.get("eos_token_id")
        eos_ids = eos if isinstance(eos, list) else ([eos] if eos is not None else [])
        if (e := tok_id(cfg.get("eos_token"))) is not None:
            eos_ids.append(e)
        special = [i for i, t in backend.get_added_tokens_decoder().items() if t.special]
        template = cfg.get("chat_template")
        if template is None and (folder / "chat_template.jinja").is_file():
            template = (folder / "chat_template.jinja").read_text()
        return cls(
            backend,
            bos_id=tok_id(cfg.get("bos_token")),
            eos_ids=eos_ids,
            add_bos=bool(cfg.get("add_bos_token", False)),
            chat_template=template,
            special_ids=special,
        )

    # --- use --------------------------------------------------------------------------------

    def encode(self, text: str, *, add_bos: bool | None = None) -> list[int]:
        ids = self.backend.encode(text, add_special_tokens=False).ids
        if (self.add_bos if add_bos is None else add_bos) and self.bos_id is not None:
            ids = [self.bos_id, *ids]
        return ids

    def decode(self, ids: Sequence[int], *, skip_special: bool = True) -> str:
        return self.backend.decode(list(ids), skip_special_tokens=skip_special)

    def apply_chat_template(
        self, messages: Sequence[dict[str, str]], *, add_generation_prompt: bool = True
    ) -> str:
        """Render `messages` ([{role, content}]) with the checkpoint's template (a Jinja sandbox)."""
        if self.chat_template is None:
            # No template in the checkpoint: a plain transcript, clearly delimited.
            lines = [f"{m['role']}: {m['content']}" for m in messages]
            return "\n".join(lines) + ("\nassistant:" if add_generation_prompt else "")
        if self._template is None:
            from jinja2.sandbox import ImmutableSandboxedEnvironment

            env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)

            def raise_exception(message: str) -> None:
                raise TokenizerError(f"chat template: {message}")

            env.globals["raise_exception"] = raise_exception
            self._template = env.from_string(self.chat_template)
        bos = self.backend.id_to_token(self.bos_id) if self.bos_id is not None else ""
        eos = self.backend.id_to_token(self.eos_ids[0]) if self.eos_ids else ""
        return self._template.render(
            messages=list(messages), add_generation_prompt=add_generation_prompt, bos_token=bos, eos_token=eos
        )


class StreamDecoder:
    """Text deltas of a growing token list. Decoding the whole list each time keeps merges of
    multi-byte characters right; a delta is held while the text ends in U+FFFD (a character whose
    bytes have not all arrived)."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.text = ""

    def push(self, token_id: int) -> str:
        """Add one token; return the new text it completes (may be empty)."""
        self.ids.append(token_id)
        text = self.tokenizer.decode(self.ids)
        if text.endswith("\ufffd"):
            return ""
        delta, self.text = text[len(self.text) :], text
        return delta

    def flush(self) -> str:
        """The text still held back (at the end of a sequence: its incomplete characters, as U+FFFD)."""
        text = self.tokenizer.decode(self.ids)
        delta, self.text = text[len(self.text) :], text
        return delta
