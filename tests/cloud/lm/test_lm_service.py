"""The LM node on a real bus (Zenoh router on loopback): telemetry out, max_batch_size / max_tokens_per_step in."""

from __future__ import annotations

import time

import httpx
from tests_helpers import wait_for

from tether.bus import Node, get_srv_type, get_type, spin_in_background
from tether.bus.parameters import to_parameter_value
from tether.cloud.lm import LLMEngine, SamplingParams
from tether.cloud.lm.service import LMNode


def _set(caller: Node, name: str, value):
    st = get_srv_type("rcl_interfaces/srv/SetParameters")
    p = get_type("rcl_interfaces/msg/Parameter")
    client = caller.create_client(st, "/cloud/lm/set_parameters")
    assert client.wait_for_service(5)
    return client.call(st.Request(parameters=[p(name=name, value=to_parameter_value(value))])).results[0]


def test_lm_node_publishes_telemetry_and_takes_knobs(bus, tiny) -> None:
    engine: LLMEngine = tiny()
    node = LMNode(engine=engine, parameter_overrides={"port": 0, "max_batch_size": 4})
    spinner = spin_in_background(node)
    caller = Node("caller", enable_telemetry=False)
    caller_spinner = spin_in_background(caller)
    reports: list[dict[str, float]] = []
    caller.create_subscription(
        get_type("tether_msgs/msg/Telemetry"),
        "/cloud/lm/telemetry",
        lambda m: reports.append({x.name: x.value for x in m.metrics}),
        10,
    )
    try:
        assert engine.limits.max_batch_size == 4  # the override reached the engine
        reply = httpx.post(
            f"{node.http.url}/v1/completions",
            json={"prompt": "hello", "max_tokens": 8, "temperature": 0},
            timeout=30,
        )
        assert reply.status_code == 200
        assert wait_for(lambda: any(r.get("lm.ttft.p50_ms", 0) > 0 for r in reports)), reports[-1:]
        last = reports[-1]
        for name in (
            "lm.tokens_per_s",
            "lm.queue_len",
            "lm.ttft.p99_ms",
            "lm.tpot.p50_ms",
            "lm.tpot.p99_ms",
            "lm.kv_blocks_used",
            "lm.kv_blocks_total",
        ):
            assert name in last, name
        assert last["lm.kv_blocks_total"] == engine.cache.kv_pool.num_blocks

        assert _set(caller, "max_batch_size", 2).successful
        assert _set(caller, "max_tokens_per_step", 32).successful
        assert (engine.limits.max_batch_size, engine.limits.max_tokens_per_step) == (2, 32)
        # The scheduler reads the limits every step: at most 2 sequences run at once now.
        for i in range(4):
            engine.submit(f"prompt {i}", SamplingParams(temperature=0.0, max_tokens=400, ignore_eos=True))
        assert wait_for(lambda: engine.scheduler.num_running == 2)
        seen = []
        for _ in range(10):
            seen.append(engine.scheduler.num_running)
            time.sleep(0.01)
        assert max(seen) == 2 and engine.scheduler.num_waiting == 2
        assert not _set(caller, "max_batch_size", 0).successful  # below the declared minimum
        assert not _set(caller, "max_tokens_per_step", 1).successful  # < max_batch_size: the engine refuses
        assert engine.limits.max_tokens_per_step == 32
        assert not _set(caller, "port", 1234).successful  # read-only
    finally:
        caller_spinner.stop()
        caller.destroy_node()
        spinner.stop()
        node.close()
        node.destroy_node()
    assert engine.cache.usage().kv_blocks_used == 0
