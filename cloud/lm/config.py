"""Configuration of the LM runtime: one frozen dataclass per domain, composed into `EngineConfig`.

The model's shape (`ModelConfig`) comes from the checkpoint; the cache, scheduler and
engine settings have defaults that run on a 2-core CPU. Every field is bounded and
checked where it enters; errors state the rule, the value and the fix (STYLE.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["CacheConfig", "ConfigError", "EngineConfig", "ModelConfig", "SchedulerConfig"]

MiB = 1024 * 1024


class ConfigError(ValueError):
    """A configuration value breaks a rule; the message names the field, the value and the fix."""


def _check(cls: str, name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ConfigError(f"{cls}.{name} must satisfy {low} <= {name} <= {high}, but got {name}={value}")


@dataclass(frozen=True)
class ModelConfig:
    """The shape of a Llama-family decoder (read from the checkpoint, never guessed)."""

    vocab_size: int
    n_layer: int
    n_embd: int
    n_head: int
    n_kv_head: int
    head_dim: int
    ffn_dim: int
    rope_base: float = 10000.0
    norm_eps: float = 1e-5
    context_len: int = 2048
    tie_embeddings: bool = True
    name: str = "llama"

    def __post_init__(self) -> None:
        for f in (
            "vocab_size",
            "n_layer",
            "n_embd",
            "n_head",
            "n_kv_head",
            "head_dim",
            "ffn_dim",
            "context_len",
        ):
            _check("ModelConfig", f, getattr(self, f), 1, 1 << 24)
        if self.n_head % self.n_kv_head:
            raise ConfigError(
                f"ModelConfig: n_head must be a multiple of n_kv_head (grouped-query attention), "
                f"but got n_head={self.n_head}, n_kv_head={self.n_kv_head}; check the checkpoint's metadata"
            )
        if self.head_dim % 2:
            raise ConfigError(f"ModelConfig.head_dim must be even for RoPE, but got head_dim={self.head_dim}")

    @property
    def kv_bytes_per_token_per_layer(self) -> int:
        """Bytes of K and V for one token in one layer, in float32."""
        return 2 * self.n_kv_head * self.head_dim * 4


@dataclass(frozen=True)
class CacheConfig:
    """The paged cache: block size in tokens, pool sizes in bytes, prefix reuse on or off."""

    block_size: int = 16  # tokens per block (of one layer)
    kv_cache_bytes: int = 1024 * MiB  # the KV block pool of an engine (pages are touched lazily)
    side_cache_bytes: int = 128 * MiB  # the pool for per-token side tensors that layers ask to keep
    prefix_caching: bool = True  # reuse the cached blocks of a shared prompt prefix (off for baselines)

    def __post_init__(self) -> None:
        _check("CacheConfig", "block_size", self.block_size, 1, 1024)
        _check("CacheConfig", "kv_cache_bytes", self.kv_cache_bytes, 1, 1 << 40)
        _check("CacheConfig", "side_cache_bytes", self.side_cache_bytes, 0, 1 << 40)


@dataclass(frozen=True)
class SchedulerConfig:
    """Knobs of the iteration-level scheduler; the first two are tunable live (bus parameters)."""

    max_batch_size: int = 8  # sequences per step (decode and prefill together)
    max_tokens_per_step: int = 256  # tokens per step: decode tokens plus prefill chunks
    max_queue: int = 64  # waiting requests before new ones are refused (HTTP 429)

    def __post_init__(self) -> None:
        _check("SchedulerConfig", "max_batch_size", self.max_batch_size, 1, 1024)
        _check("SchedulerConfig", "max_tokens_per_step", self.max_tokens_per_step, 1, 1 << 20)
        _check("SchedulerConfig", "max_queue", self.max_queue, 0, 1 << 20)
        if self.max_tokens_per_step < self.max_batch_size:
            raise ConfigError(
                "SchedulerConfig: max_tokens_per_step >= max_batch_size must hold (every running sequence "
                f"decodes one token per step), but got max_tokens_per_step={self.max_tokens_per_step}, "
                f"max_batch_size={self.max_batch_size}; raise max_tokens_per_step"
            )


@dataclass(frozen=True)
class EngineConfig:
    """The root: cache, scheduler and the engine's own settings."""

    cache: CacheConfig = field(default_factory=CacheConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    threads: int = 2  # torch intra-op threads of the engine
    max_context: int | None = None  # None = the model's context length
    packed_weights: bool = True  # GEMMs on oneDNN-packed weight copies (faster; a 2nd copy in memory)

    def __post_init__(self) -> None:
        _check("EngineConfig", "threads", self.threads, 1, 1024)
        if self.max_context is not None:
            _check("EngineConfig", "max_context", self.max_context, 2, 1 << 24)
