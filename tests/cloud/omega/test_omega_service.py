"""The OMEGA node on a real bus (Zenoh router on loopback): telemetry out, recompute_budget and method in."""

from __future__ import annotations

from tests_helpers import wait_for

from tether.bus import Node, get_srv_type, get_type, spin_in_background
from tether.bus.parameters import to_parameter_value
from tether.cloud.omega.plan import Exact, Selective
from tether.cloud.omega.service import OmegaNode


def _set(caller: Node, name: str, value):
    st = get_srv_type("rcl_interfaces/srv/SetParameters")
    p = get_type("rcl_interfaces/msg/Parameter")
    client = caller.create_client(st, "/cloud/omega/set_parameters")
    assert client.wait_for_service(10)
    return client.call(st.Request(parameters=[p(name=name, value=to_parameter_value(value))])).results[0]


def test_omega_node_reports_latency_accuracy_and_takes_the_budget(bus, tiny_bundle) -> None:
    node = OmegaNode(
        parameter_overrides={
            "root": str(tiny_bundle.root),
            "model": "sage3",
            "recompute_budget": 0.0,
            "request_rate_hz": 50.0,
        }
    )
    spinner = spin_in_background(node)
    caller = Node("caller", enable_telemetry=False)
    caller_spinner = spin_in_background(caller)
    reports: list[dict[str, float]] = []
    caller.create_subscription(
        get_type("tether_msgs/msg/Telemetry"),
        "/cloud/omega/telemetry",
        lambda m: reports.append({x.name: x.value for x in m.metrics}),
        10,
    )
    try:

        def served_two() -> bool:
            return any(r.get("omega.requests", 0) >= 2 for r in reports)

        assert wait_for(served_two, timeout=30.0), reports[-1:]
        last = reports[-1]
        assert last["omega.latency.p99_ms"] >= last["omega.latency.p50_ms"] > 0
        assert 0.0 <= last["omega.accuracy"] <= 1.0
        assert last["omega.recompute_budget"] == 0.0 and last["omega.recomputed_share"] == 0.0

        assert _set(caller, "recompute_budget", 1.0).successful
        assert node._method == Selective(1.0)
        assert wait_for(
            lambda: (
                reports[-1].get("omega.recomputed_share") == 1.0
                and reports[-1]["omega.recompute_budget"] == 1.0
            ),
            timeout=30.0,
        )
        assert not _set(caller, "recompute_budget", 1.5).successful  # above the declared maximum
        assert node._method == Selective(1.0)
        assert _set(caller, "method", "exact").successful and node._method == Exact()
        assert not _set(caller, "method", "psychic").successful
        assert not _set(caller, "model", "gat3").successful  # read-only
        assert node.error is None
    finally:
        caller_spinner.stop()
        caller.destroy_node()
        spinner.stop()
        node.close()
        node.destroy_node()
