"""DSLA-Serve: the load policy (hysteresis, cooldown), conversion under real load with folds, the bus knobs."""

from __future__ import annotations

import time

import pytest
from dsla_tiny import tiny_model
from tests_helpers import wait_for

from tether.bus import Node, get_srv_type, get_type, spin_in_background
from tether.bus.parameters import to_parameter_value
from tether.cloud.dsla.policy import ConversionPolicy, Load, PolicyConfig
from tether.cloud.dsla.serve import DSLAServe, LevelError
from tether.cloud.dsla.service import DSLANode
from tether.cloud.lm import SamplingParams

CFG = PolicyConfig(
    interval_s=0.05,
    cooldown_s=10.0,
    convert_context=100,
    revert_context=50,
    convert_queue=5,
    revert_queue=2,
    convert_memory=0.9,
    revert_memory=0.5,
    max_fraction=1.0,
)


class Clock:
    """A hand-moved clock, so cooldowns are checked without sleeping."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_policy_converts_one_layer_per_cooldown_holds_in_the_band_and_reverts() -> None:
    policy = ConversionPolicy(CFG, n_layer=4, available=3)
    high, band, low = Load(0, 150, 0.1), Load(0, 70, 0.1), Load(0, 10, 0.1)
    assert policy.decide(high, 0, now=0.0) == 1
    assert policy.decide(high, 1, now=5.0) == 1  # cooling down
    assert policy.decide(high, 1, now=10.0) == 2
    assert policy.decide(high, 2, now=20.0) == 3
    assert policy.decide(high, 3, now=30.0) == 3  # the chain has 3 layers: the ceiling
    assert policy.decide(band, 3, now=45.0) == 3  # between the thresholds: hysteresis holds the level
    assert policy.decide(low, 3, now=46.0) == 2
    assert policy.decide(low, 2, now=50.0) == 2  # cooling down
    assert policy.decide(low, 2, now=56.0) == 1
    # The queue and memory pressure count as load too; either blocks a revert.
    assert policy.decide(Load(5, 10, 0.1), 1, now=70.0) == 2
    assert policy.decide(Load(3, 10, 0.1), 2, now=90.0) == 2
    assert policy.decide(Load(0, 10, 0.95), 2, now=100.0) == 3
    with pytest.raises(ValueError, match="hysteresis"):
        PolicyConfig(convert_context=100, revert_context=200)


def test_serve_converts_under_load_folds_in_flight_and_reverts_when_it_drops(engines) -> None:
    model = tiny_model(seed=2)
    engine = engines(model)
    clock = Clock()
    serve = DSLAServe(engine, order=[2, 0, 1], policy=CFG, lookahead=2, clock=clock)
    engine.start()
    try:
        params = SamplingParams(temperature=0, max_tokens=900, ignore_eos=True)
        ids = [engine.submit([5 + i] * 120, params) for i in range(3)]  # 120 tokens >= convert_context
        deadline = time.monotonic() + 30
        while engine.scheduler.num_running < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert serve.tick() == 1  # load is high: one layer
        assert model.slots[2].active == "dsla"
        # The three sequences kept layer 2's inputs (next in the order): folded, none dropped.
        assert (serve.folds.folded, serve.folds.failed) == (3, 0)
        clock.t += 5
        assert serve.tick() == 1  # cooldown
        clock.t += 5
        assert serve.tick() == 2
        assert serve.folds.folded == 6  # layer 0 was kept too (lookahead 2)
        assert [s.keep_inputs for s in model.slots] == [False, True, False]  # now only layer 1 is next
        kinds = engine.call(lambda e: [list(s.kinds) for s in e.cache.seqs.values()]).result(10)
        assert kinds == [["dsla", "softmax", "dsla"]] * 3
        for rid in ids:
            engine.cancel(rid)
        while engine.has_work():
            time.sleep(0.01)
        clock.t += 10
        assert serve.tick() == 1  # the load dropped: revert the last converted layer
        assert model.slots[0].active == "softmax" and model.slots[2].active == "dsla"
        assert serve.tick() == 1  # cooling down
        clock.t += 10
        assert serve.tick() == 0
        snap = serve.snapshot()
        assert snap["dsla.converted_layers"] == 0 and snap["dsla.folded"] == 6
        assert snap["dsla.cache_bytes"] == 0  # every request ended: nothing cached
    finally:
        engine.stop()


def _set(caller: Node, name: str, value):
    st = get_srv_type("rcl_interfaces/srv/SetParameters")
    p = get_type("rcl_interfaces/msg/Parameter")
    client = caller.create_client(st, "/cloud/dsla/set_parameters")
    assert client.wait_for_service(5)
    return client.call(st.Request(parameters=[p(name=name, value=to_parameter_value(value))])).results[0]


def test_bus_knobs_reject_a_bad_level_with_the_range_and_manual_overrides_auto(bus, engines) -> None:
    model = tiny_model(seed=3)
    serve = DSLAServe(engines(model), order=[1, 2, 0], policy=CFG)
    with pytest.raises(LevelError, match=r"\[0, 3\]"):
        serve.set_converted_layers(4)
    node = DSLANode(serve=serve, parameter_overrides={"http": False})
    spinner = spin_in_background(node)
    caller = Node("caller", enable_telemetry=False)
    caller_spinner = spin_in_background(caller)
    reports: list[dict[str, float]] = []
    caller.create_subscription(
        get_type("tether_msgs/msg/Telemetry"),
        "/cloud/dsla/telemetry",
        lambda m: reports.append({x.name: x.value for x in m.metrics}),
        10,
    )
    try:
        bad = _set(caller, "converted_layers", 7)
        assert not bad.successful and "0" in bad.reason and "3" in bad.reason, bad.reason
        assert serve.level == 0 and serve.mode == "auto"
        assert not _set(caller, "policy", "sometimes").successful
        assert _set(caller, "converted_layers", 2).successful
        assert wait_for(lambda: serve.level == 2)
        assert serve.mode == "manual" and node.get_parameter("policy").value == "manual"
        assert [s.active for s in model.slots] == ["softmax", "dsla", "dsla"]
        # Manual: the policy leaves the level alone however low the load is.
        time.sleep(3 * CFG.interval_s)
        assert serve.level == 2
        assert _set(caller, "policy", "auto").successful and serve.mode == "auto"
        assert wait_for(lambda: any(r.get("dsla.converted_layers") == 2 for r in reports))
        for name in ("dsla.cache_bytes", "lm.tokens_per_s", "lm.tpot.p50_ms", "dsla.folded"):
            assert name in reports[-1], name
    finally:
        caller_spinner.stop()
        caller.destroy_node()
        spinner.stop()
        node.destroy_node()
