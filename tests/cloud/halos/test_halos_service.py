"""The HALoS node on a real bus (Zenoh router on loopback): telemetry out, knobs K/alpha/H in."""

from __future__ import annotations

from tests_helpers import wait_for

from tether.bus import Node, get_srv_type, get_type, spin_in_background
from tether.bus.parameters import to_parameter_value
from tether.cloud.halos import ModelConfig, WorkerOptimConfig, WorkloadConfig
from tether.cloud.halos.service import HalosNode

TINY = WorkloadConfig(model=ModelConfig(seq_len=16, d_model=16, n_layer=1, n_head=2), val_windows=8)


def _set(caller: Node, name: str, value):
    st = get_srv_type("rcl_interfaces/srv/SetParameters")
    p = get_type("rcl_interfaces/msg/Parameter")
    client = caller.create_client(st, "/cloud/halos/set_parameters")
    assert client.wait_for_service(5)
    return client.call(st.Request(parameters=[p(name=name, value=to_parameter_value(value))])).results[0]


def test_halos_node_publishes_telemetry_and_takes_knobs(bus) -> None:
    node = HalosNode(
        workload=TINY,
        optim=WorkerOptimConfig(warmup_steps=2, total_steps=10_000),
        parameter_overrides={"budget_steps": 10_000, "K": 8},
    )
    spinner = spin_in_background(node)
    caller = Node("caller", enable_telemetry=False)
    caller_spinner = spin_in_background(caller)
    reports: list[dict[str, float]] = []
    caller.create_subscription(
        get_type("tether_msgs/msg/Telemetry"),
        "/cloud/halos/telemetry",
        lambda m: reports.append({x.name: x.value for x in m.metrics}),
        10,
    )
    try:

        def all_servers_updated() -> bool:  # every region's server has applied a worker delta
            return bool(reports) and all(reports[-1].get(f"halos.server{r}.updates", 0) > 0 for r in range(4))

        assert wait_for(all_servers_updated, timeout=60.0), reports[-1:]
        last = reports[-1]
        for r in range(4):  # the default 4-region topology
            assert f"halos.server{r}.staleness_mean" in last and f"halos.server{r}.train_loss" in last
        assert "halos.val_loss" in last and "halos.global.updates" in last
        assert node.sim.servers[0].push_every == 8  # the override reached the algorithm

        assert _set(caller, "K", 3).successful
        assert _set(caller, "alpha", 0.5).successful
        assert _set(caller, "H", 2).successful
        assert all(s.push_every == 3 and s.merge_alpha == 0.5 for s in node.sim.servers)
        assert node.sim.local_steps == 2
        rejected = _set(caller, "alpha", 0.0)  # below the declared minimum
        assert not rejected.successful and node.sim.servers[0].merge_alpha == 0.5
        assert not _set(caller, "budget_steps", 5).successful  # read-only
        assert node.error is None
    finally:
        caller_spinner.stop()
        caller.destroy_node()
        spinner.stop()
        node.close()
        node.destroy_node()
