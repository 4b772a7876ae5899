"""`tether lm`: serve the shared LM (OpenAI API, optionally on the bus), generate text, show the model."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(
    help="The shared language model: an OpenAI-compatible server and a local generator.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _engine(
    model: Optional[Path],
    threads: int,
    max_batch_size: int,
    max_tokens_per_step: int,  # noqa: UP045
    prefix_cache: bool,
):
    from tether.cloud.lm.config import CacheConfig, EngineConfig, SchedulerConfig
    from tether.cloud.lm.engine import LLMEngine

    config = EngineConfig(
        cache=CacheConfig(prefix_caching=prefix_cache),
        scheduler=SchedulerConfig(max_batch_size=max_batch_size, max_tokens_per_step=max_tokens_per_step),
        threads=threads,
    )
    return LLMEngine.load(model, config)


_MODEL = typer.Option(
    None,
    "--model",
    help="GGUF file or safetensors folder (default: lm_model setting, "
    "else the embedded SmolLM2-135M-Instruct).",
)
_THREADS = typer.Option(2, "--threads", min=1, help="torch threads of the engine.")
_MBS = typer.Option(8, "--max-batch-size", min=1, help="Sequences per engine step.")
_MTPS = typer.Option(
    256, "--max-tokens-per-step", min=1, help="Tokens per engine step (decode + prefill chunks)."
)
_PREFIX = typer.Option(
    True, "--prefix-cache/--no-prefix-cache", help="Reuse cached blocks of shared prefixes."
)


@app.command()
def serve(
    host: Optional[str] = typer.Option(
        None,
        "--host",
        help="Bind address (default: the lm_host setting, "  # noqa: UP045
        "loopback).",
    ),
    port: Optional[int] = typer.Option(None, "--port", help="TCP port (default: the lm_port setting)."),  # noqa: UP045
    model: Optional[Path] = _MODEL,  # noqa: UP045
    threads: int = _THREADS,
    max_batch_size: int = _MBS,
    max_tokens_per_step: int = _MTPS,
    prefix_cache: bool = _PREFIX,
    bus: bool = typer.Option(False, "--bus", help="Also join the bus as node /cloud/lm (telemetry, knobs)."),
) -> None:
    """Serve /v1/completions, /v1/chat/completions, /v1/models, /health and /metrics."""
    from tether.settings import settings

    host = host or settings().lm_host
    port = settings().lm_port if port is None else port
    if bus:
        from tether.bus import run_node
        from tether.cloud.lm.service import LMNode

        overrides = {
            "host": host,
            "port": port,
            "model": str(model or ""),
            "threads": threads,
            "max_batch_size": max_batch_size,
            "max_tokens_per_step": max_tokens_per_step,
            "prefix_caching": prefix_cache,
        }
        raise typer.Exit(run_node(lambda **kw: LMNode(parameter_overrides=overrides, **kw), []))
    from tether.cloud.lm.server import serve as serve_http

    serve_http(_engine(model, threads, max_batch_size, max_tokens_per_step, prefix_cache), host, port)


@app.command()
def generate(
    prompt: str = typer.Argument(..., help="The prompt (a user message with --chat)."),
    max_tokens: int = typer.Option(64, "--max-tokens", min=1),
    temperature: float = typer.Option(0.0, "--temperature", min=0.0),
    top_p: float = typer.Option(1.0, "--top-p"),
    seed: Optional[int] = typer.Option(None, "--seed"),  # noqa: UP045
    chat: bool = typer.Option(True, "--chat/--raw", help="Apply the chat template."),
    model: Optional[Path] = _MODEL,  # noqa: UP045
    threads: int = _THREADS,
) -> None:
    """Generate from one prompt in this process, streaming the text to stdout."""
    from tether.cloud.lm.sampling import SamplingParams

    engine = _engine(model, threads, 8, 256, True)
    text = engine.tokenizer.apply_chat_template([{"role": "user", "content": prompt}]) if chat else prompt
    done = []

    def show(out) -> None:
        sys.stdout.write(out.text)
        sys.stdout.flush()
        if out.finished:
            done.append(out)

    engine.submit(
        text,
        SamplingParams(temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed),
        on_output=show,
    )
    while not done:
        engine.step()
    out = done[0]
    typer.echo(
        f"\n[{out.prompt_tokens} prompt + {out.completion_tokens} output tokens, "
        f"finish: {out.finish_reason.value}]",
        err=True,
    )


@app.command()
def info(model: Optional[Path] = _MODEL) -> None:  # noqa: UP045
    """The checkpoint's shape and what one token of cache costs."""
    from tether.cloud.lm.checkpoint import load_checkpoint, resolve_model_path

    ckpt = load_checkpoint(model)
    cfg = ckpt.config
    typer.echo(f"path:   {resolve_model_path(model)}")
    typer.echo(f"name:   {ckpt.name} ({cfg.name})")
    typer.echo(
        f"shape:  {cfg.n_layer} layers, n_embd {cfg.n_embd}, heads {cfg.n_head} q / {cfg.n_kv_head} kv "
        f"x {cfg.head_dim}, ffn {cfg.ffn_dim}, vocab {cfg.vocab_size}, context {cfg.context_len}"
    )
    params = sum(t.numel() for t in ckpt.weights.values())
    typer.echo(f"params: {params / 1e6:.1f} M (float32 {params * 4 / 2**20:.0f} MiB)")
    kv = cfg.kv_bytes_per_token_per_layer
    typer.echo(f"cache:  {kv} B per token per layer, {kv * cfg.n_layer / 1024:.1f} KiB per token")
    typer.echo(
        f"chat template: {'yes' if ckpt.tokenizer.chat_template else 'no'}; "
        f"eos ids {list(ckpt.tokenizer.eos_ids)}"
    )
