"""The shared language-model runtime: a Llama-family model, a paged per-layer cache, a continuous-batching
engine and an OpenAI-compatible server (DSLA-Serve, Symphony, Patchwork, SpeQL and TraceLLM build on it).

    from tether.cloud.lm import LLMEngine, SamplingParams
    engine = LLMEngine.load()                  # the lm_model setting, else the embedded SmolLM2-135M-Instruct
    [out] = engine.generate(["The capital of France is"], SamplingParams(temperature=0, max_tokens=8))

Extension points: `AttentionLayer` (a new attention kind per layer, e.g. DSLA's linear attention,
registered with `AttentionSlot.add_kind`), `Scheduler` (a scheduling policy), `CacheExport`
(a sequence's cache as tensors, for migration).
"""

from tether.cloud.lm import packed
from tether.cloud.lm.attention import AttentionLayer, AttentionSlot, CacheKind, SoftmaxAttention
from tether.cloud.lm.batch import AttentionBatch, StepBatch
from tether.cloud.lm.cache import CacheExport, CacheManager, CacheUsage, SequenceCache
from tether.cloud.lm.checkpoint import Checkpoint, CheckpointError, default_model_path, load_checkpoint
from tether.cloud.lm.config import CacheConfig, ConfigError, EngineConfig, ModelConfig, SchedulerConfig
from tether.cloud.lm.engine import LLMEngine, QueueFull, RequestRejected
from tether.cloud.lm.model import Transformer
from tether.cloud.lm.request import FinishReason, RequestOutput
from tether.cloud.lm.sampling import SamplingError, SamplingParams
from tether.cloud.lm.scheduler import FcfsScheduler, ScheduledRequest, Scheduler, SchedulerOutput
from tether.cloud.lm.tokenizer import Tokenizer

__all__ = [
    "AttentionBatch",
    "AttentionLayer",
    "AttentionSlot",
    "CacheConfig",
    "CacheExport",
    "CacheKind",
    "CacheManager",
    "CacheUsage",
    "Checkpoint",
    "CheckpointError",
    "ConfigError",
    "EngineConfig",
    "FcfsScheduler",
    "FinishReason",
    "LLMEngine",
    "ModelConfig",
    "QueueFull",
    "RequestOutput",
    "RequestRejected",
    "SamplingError",
    "SamplingParams",
    "ScheduledRequest",
    "Scheduler",
    "SchedulerConfig",
    "SchedulerOutput",
    "SequenceCache",
    "SoftmaxAttention",
    "StepBatch",
    "Tokenizer",
    "Transformer",
    "default_model_path",
    "load_checkpoint",
    "packed",
]
