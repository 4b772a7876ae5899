"""The OpenAI-compatible server over a real engine (the embedded SmolLM2) and a real HTTP client on loopback."""

from __future__ import annotations

import json
import threading

import httpx
import pytest
from tests_helpers import wait_for

from tether.cloud.lm import EngineConfig, LLMEngine, SamplingParams, SchedulerConfig
from tether.cloud.lm.server import ServerThread, create_app

CHAT = {
    "messages": [{"role": "user", "content": "What is the capital of France?"}],
    "temperature": 0,
    "max_tokens": 12,
}


@pytest.fixture(scope="module")
def served(smollm):
    model, tok, name = smollm
    engine = LLMEngine(model, tok, EngineConfig(threads=1, max_context=512), name=name).start()
    with ServerThread(create_app(engine)) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        yield engine, client
    engine.stop()


def _sse(lines) -> list[dict | str]:
    events = []
    for line in lines:
        if line.startswith("data: "):
            data = line[len("data: ") :]
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


def test_models_health_and_metrics(served) -> None:
    engine, client = served
    assert client.get("/health").json()["status"] == "ok"
    models = client.get("/v1/models").json()
    assert models["object"] == "list" and [m["id"] for m in models["data"]] == [engine.name]
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and "lm_time_to_first_token_seconds_bucket" in metrics.text


def test_completion_matches_the_engine_and_counts_usage(served) -> None:
    engine, client = served
    body = {"model": engine.name, "prompt": "The capital of France is", "max_tokens": 6, "temperature": 0}
    reply = client.post("/v1/completions", json=body)
    assert reply.status_code == 200
    data = reply.json()
    [direct] = engine.generate(["The capital of France is"], SamplingParams(temperature=0.0, max_tokens=6))
    assert data["object"] == "text_completion" and data["choices"][0]["text"] == direct.text
    assert data["choices"][0]["finish_reason"] == "length"
    prompt_tokens = len(engine.tokenizer.encode("The capital of France is"))
    assert data["usage"] == {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": 6,
        "total_tokens": prompt_tokens + 6,
        "prompt_tokens_details": {"cached_tokens": 0},
    }
    stopped = client.post("/v1/completions", json={**body, "max_tokens": 20, "stop": ["."]}).json()
    assert "." not in stopped["choices"][0]["text"] and stopped["choices"][0]["finish_reason"] == "stop"


def test_chat_streams_what_it_answers_whole(served) -> None:
    _, client = served
    whole = client.post("/v1/chat/completions", json=CHAT).json()
    assert whole["object"] == "chat.completion" and whole["choices"][0]["message"]["role"] == "assistant"
    answer = whole["choices"][0]["message"]["content"]
    assert "Paris" in answer
    with client.stream(
        "POST",
        "/v1/chat/completions",
        json={**CHAT, "stream": True, "stream_options": {"include_usage": True}},
    ) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = _sse(r.iter_lines())
    assert events[-1] == "[DONE]"
    chunks, usage = events[:-2], events[-2]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert len(chunks) > 2  # streamed piece by piece, not in one go
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == answer
    assert chunks[-1]["choices"][0]["finish_reason"] == whole["choices"][0]["finish_reason"]
    assert usage["choices"] == []
    counts = ("prompt_tokens", "completion_tokens", "total_tokens")
    assert [usage["usage"][k] for k in counts] == [whole["usage"][k] for k in counts]
    # The second asking of the same chat reuses the first's full blocks of the prompt.
    assert (
        usage["usage"]["prompt_tokens_details"]["cached_tokens"]
        == (whole["usage"]["prompt_tokens"] - 1) // 16 * 16
    )


def test_bad_requests_get_their_codes(served) -> None:
    engine, client = served
    bad_json = client.post(
        "/v1/completions", content=b'{"prompt": "x", ', headers={"content-type": "application/json"}
    )
    assert bad_json.status_code == 422 and "JSON" in bad_json.json()["error"]["message"]
    assert client.post("/v1/completions", json={"max_tokens": 3}).status_code == 422  # no prompt
    assert client.post("/v1/chat/completions", json={"messages": []}).status_code == 422
    unknown = client.post("/v1/completions", json={"model": "gpt-9", "prompt": "x"})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"
    long_prompt = "word " * 600  # ~600 tokens, the context is 512
    over = client.post("/v1/completions", json={"prompt": long_prompt})
    assert over.status_code == 400
    message = over.json()["error"]["message"]
    assert "512" in message and str(len(engine.tokenizer.encode(long_prompt))) in message
    too_many = client.post("/v1/completions", json={"prompt": "hi", "max_tokens": 600})
    assert too_many.status_code == 400 and "max_tokens" in too_many.json()["error"]["message"]


def test_client_disconnect_cancels_and_frees_blocks(served) -> None:
    engine, client = served
    aborted = engine.metrics.p_requests.labels(reason="abort")._value.get()
    body = {
        "prompt": "Count slowly:",
        "max_tokens": 400,
        "temperature": 0,
        "ignore_eos": True,
        "stream": True,
    }
    with client.stream("POST", "/v1/completions", json=body) as r:
        lines = r.iter_lines()
        assert next(lines).startswith("data: ")
        assert engine.cache.usage().kv_blocks_used > 0  # generating
    # leaving the block closed the connection mid-stream
    assert wait_for(lambda: engine.metrics.p_requests.labels(reason="abort")._value.get() == aborted + 1)
    assert wait_for(lambda: engine.cache.usage().kv_blocks_used == 0 and not engine.scheduler.has_work())


def test_overload_answers_429(smollm) -> None:
    model, tok, name = smollm
    # The loop is not started yet: the first request waits in the queue, and the queue holds one.
    engine = LLMEngine(model, tok, EngineConfig(threads=1, scheduler=SchedulerConfig(max_queue=1)), name=name)
    with ServerThread(create_app(engine)) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        first: dict = {}
        body = {"prompt": "Hello", "max_tokens": 2, "temperature": 0}
        waiting = threading.Thread(target=lambda: first.update(r=client.post("/v1/completions", json=body)))
        waiting.start()
        assert wait_for(lambda: engine._outstanding == 1)
        refused = client.post("/v1/completions", json=body)
        assert refused.status_code == 429 and refused.json()["error"]["type"] == "rate_limit_error"
        engine.start()
        waiting.join(timeout=60)
        assert first["r"].status_code == 200
        assert client.post("/v1/completions", json=body).status_code == 200  # served again
    engine.stop()
    assert engine.cache.usage().kv_blocks_used == 0
