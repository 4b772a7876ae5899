"""The OpenAI-compatible HTTP server of an engine (FastAPI + uvicorn), loopback by default.

Routes: `GET /health`, `GET /v1/models`, `POST /v1/completions`, `POST /v1/chat/completions`
(both with SSE streaming when `stream` is true, `usage` in every reply), `GET /metrics`
(Prometheus). Errors use OpenAI's shape: 400 a request that can never run (prompt over the
context, bad sampling values), 404 an unknown model, 422 a body that is not valid JSON or
not the schema, 429 when `max_queue` requests wait already. A client that disconnects
cancels its request, which frees its blocks at the engine's next step.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse

from tether.cloud.lm.engine import LLMEngine, QueueFull, RequestRejected
from tether.cloud.lm.protocol import ChatRequest, CompletionRequest, _Common, error_body
from tether.cloud.lm.request import RequestOutput
from tether.cloud.lm.sampling import SamplingError

__all__ = ["ServerThread", "create_app", "serve"]


class _HTTPError(Exception):
    def __init__(self, status: int, message: str, type_: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type_, self.code = status, message, type_, code


def create_app(engine: LLMEngine) -> FastAPI:
    """The app for a running engine (the caller starts and stops the engine)."""
    app = FastAPI(title="tether lm", version="1")
    created = int(time.time())

    @app.exception_handler(_HTTPError)
    async def _http_error(_: Request, exc: _HTTPError) -> JSONResponse:
        return JSONResponse(error_body(exc.message, exc.type_, exc.code), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return JSONResponse(
            error_body(f"invalid request: {details}", "invalid_request_error"), status_code=422
        )

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "model": engine.name}

    @app.get("/v1/models")
    async def models() -> dict:
        card = {
            "id": engine.name,
            "object": "model",
            "created": created,
            "owned_by": "tether",
            "max_model_len": engine.max_context,
        }
        return {"object": "list", "data": [card]}

    @app.get("/metrics")
    async def metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(engine.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    def check_model(body: _Common) -> None:
        if body.model is not None and body.model != engine.name:
            raise _HTTPError(
                404,
                f"model {body.model!r} does not exist; this server serves {engine.name!r}",
                "invalid_request_error",
                "model_not_found",
            )

    def prepare(body: _Common, prompt_ids: list[int], max_tokens: int | None):
        n = len(prompt_ids)
        room = engine.max_context - n
        if room < 1:
            raise _HTTPError(
                400,
                f"the prompt has {n} tokens but the context holds {engine.max_context} tokens "
                f"(prompt and output together); shorten the prompt to at most "
                f"{engine.max_context - 1} tokens",
                "invalid_request_error",
                "context_length_exceeded",
            )
        if max_tokens is not None and n + max_tokens > engine.max_context:
            raise _HTTPError(
                400,
                f"the prompt has {n} tokens and max_tokens is {max_tokens}: {n + max_tokens} "
                f"exceeds the context of {engine.max_context} tokens; lower max_tokens to at most "
                f"{room} or shorten the prompt",
                "invalid_request_error",
                "context_length_exceeded",
            )
        try:
            return body.sampling(max_tokens or room)
        except SamplingError as exc:
            raise _HTTPError(400, str(exc), "invalid_request_error") from None

    def submit(prompt_ids: list[int], params) -> tuple[str, asyncio.Queue]:
        """Queue the request now (so 429 and 400 come before any streamed byte)."""
        loop = asyncio.get_running_loop()
        outputs: asyncio.Queue[RequestOutput] = asyncio.Queue()
        try:
            rid = engine.submit(
                prompt_ids,
                params,
                request_id=f"cmpl-{uuid.uuid4().hex[:24]}",
                on_output=lambda o: loop.call_soon_threadsafe(outputs.put_nowait, o),
            )
        except QueueFull as exc:
            raise _HTTPError(429, f"server overloaded: {exc}", "rate_limit_error", "queue_full") from None
        except RequestRejected as exc:
            raise _HTTPError(400, str(exc), "invalid_request_error", "context_length_exceeded") from None
        return rid, outputs

    async def follow(http: Request, rid: str, outputs: asyncio.Queue) -> AsyncIterator[RequestOutput]:
        """The engine's outputs for `rid`; cancels the request when the client goes away."""
        finished = False
        try:
            while not finished:
                get = asyncio.ensure_future(outputs.get())
                while not get.done():
                    done, _ = await asyncio.wait({get}, timeout=0.25)
                    if not done and await http.is_disconnected():
                        get.cancel()
                        return
                out = get.result()
                finished = out.finished
                yield out
        finally:
            if not finished:
                engine.cancel(rid)

    async def collect(http: Request, prompt_ids: list[int], params) -> RequestOutput:
        acc = RequestOutput("", [], "")
        rid, outputs = submit(prompt_ids, params)
        async for out in follow(http, rid, outputs):
            acc.request_id = out.request_id
            acc.token_ids += out.token_ids
            acc.text += out.text
            acc.finished, acc.finish_reason, acc.error = out.finished, out.finish_reason, out.error
            acc.prompt_tokens, acc.completion_tokens, acc.cached_tokens = (
                out.prompt_tokens,
                out.completion_tokens,
                out.cached_tokens,
            )
        if acc.error:
            raise _HTTPError(500, f"generation failed: {acc.error}", "server_error")
        return acc

    def usage(out: RequestOutput) -> dict:
        return {
            "prompt_tokens": out.prompt_tokens,
            "completion_tokens": out.completion_tokens,
            "total_tokens": out.prompt_tokens + out.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": out.cached_tokens},
        }

    def finish(out: RequestOutput) -> str | None:
        return (
            None
            if out.finish_reason is None
            else ("stop" if out.finish_reason.value == "abort" else out.finish_reason.value)
        )

    def sse(obj: dict) -> bytes:
        return f"data: {json.dumps(obj)}\n\n".encode()

    def stream(http: Request, prompt_ids, params, body: _Common, shape, object_: str) -> StreamingResponse:
        ts = int(time.time())
        rid, outputs = submit(prompt_ids, params)

        async def events() -> AsyncIterator[bytes]:
            first = True
            last = None
            async for out in follow(http, rid, outputs):
                last = out
                if out.error:
                    yield sse(error_body(f"generation failed: {out.error}", "server_error"))
                    break
                if out.text or out.finished or first:
                    yield sse(shape(rid, ts, out, first))
                    first = False
            if last is not None and body.include_usage:
                yield sse(
                    {
                        "id": rid,
                        "object": object_,
                        "created": ts,
                        "model": engine.name,
                        "choices": [],
                        "usage": usage(last),
                    }
                )
            yield b"data: [DONE]\n\n"

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def parse(http: Request, model: type[_Common]) -> _Common:
        try:
            raw = await http.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RequestValidationError(
                [{"loc": ("body",), "msg": f"not valid JSON: {exc}", "type": "json"}]
            ) from None
        from pydantic import ValidationError

        try:
            return model.model_validate(raw)
        except ValidationError as exc:
            raise RequestValidationError(exc.errors()) from None

    @app.post("/v1/completions")
    async def completions(http: Request):
        body = await parse(http, CompletionRequest)
        check_model(body)
        prompt_ids = (
            engine.tokenizer.encode(body.prompt) if isinstance(body.prompt, str) else list(body.prompt)
        )
        if any(not 0 <= t < engine.model.config.vocab_size for t in prompt_ids):
            raise _HTTPError(
                400,
                f"prompt token ids must satisfy 0 <= id < {engine.model.config.vocab_size}",
                "invalid_request_error",
            )
        params = prepare(body, prompt_ids, body.max_tokens)
        echo = (
            (body.prompt if isinstance(body.prompt, str) else engine.tokenizer.decode(prompt_ids))
            if body.echo
            else ""
        )

        def chunk(rid: str, ts: int, out: RequestOutput, first: bool) -> dict:
            text = (echo if first else "") + out.text
            return {
                "id": rid,
                "object": "text_completion",
                "created": ts,
                "model": engine.name,
                "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish(out)}],
            }

        if body.stream:
            return stream(http, prompt_ids, params, body, chunk, "text_completion")
        out = await collect(http, prompt_ids, params)
        return {
            "id": out.request_id,
            "object": "text_completion",
            "created": int(time.time()),
            "model": engine.name,
            "choices": [
                {"index": 0, "text": echo + out.text, "logprobs": None, "finish_reason": finish(out)}
            ],
            "usage": usage(out),
        }

    @app.post("/v1/chat/completions")
    async def chat(http: Request):
        body = await parse(http, ChatRequest)
        check_model(body)
        text = engine.tokenizer.apply_chat_template([m.model_dump() for m in body.messages])
        prompt_ids = engine.tokenizer.encode(text)
        params = prepare(body, prompt_ids, body.max_completion_tokens or body.max_tokens)

        def chunk(rid: str, ts: int, out: RequestOutput, first: bool) -> dict:
            delta = {"role": "assistant", "content": out.text} if first else {"content": out.text}
            return {
                "id": rid,
                "object": "chat.completion.chunk",
                "created": ts,
                "model": engine.name,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish(out)}],
            }

        if body.stream:
            return stream(http, prompt_ids, params, body, chunk, "chat.completion.chunk")
        out = await collect(http, prompt_ids, params)
        return {
            "id": out.request_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": engine.name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": out.text},
                    "finish_reason": finish(out),
                }
            ],
            "usage": usage(out),
        }

    return app


class ServerThread:
    """uvicorn serving `app` in a background thread: `with ServerThread(app, host, port) as s:`."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> None:
        import uvicorn

        self.server = uvicorn.Server(
            uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off")
        )
        self.server.install_signal_handlers = lambda: None  # not the main thread
        self._thread = threading.Thread(target=self.server.run, name="lm-http", daemon=True)
        self.host = host

    @property
    def port(self) -> int:
        return self.server.servers[0].sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the HTTP server did not start within 30 s")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=10)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(engine: LLMEngine, host: str, port: int) -> None:
    """Serve until interrupted (the `tether lm serve` command); the engine runs in its thread."""
    import uvicorn

    engine.start()
    try:
        uvicorn.run(create_app(engine), host=host, port=port, log_level="info")
    finally:
        engine.stop()
