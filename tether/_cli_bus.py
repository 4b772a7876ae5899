"""The bus commands of `tether`, in ROS 2 CLI syntax: topic, node, param, service, top, record, play, metrics, up."""

from __future__ import annotations

import collections
import contextlib
import itertools
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import typer
import yaml

from tether.cli import app, console, err

topic_app = typer.Typer(help="Topics: list, echo, hz, pub (as `ros2 topic`).", no_args_is_help=True)
node_app = typer.Typer(help="Nodes on the bus.", no_args_is_help=True)
param_app = typer.Typer(help="Parameters over the ROS 2 parameter services.", no_args_is_help=True)
service_app = typer.Typer(help="Services: list, call.", no_args_is_help=True)
app.add_typer(topic_app, name="topic")
app.add_typer(node_app, name="node")
app.add_typer(param_app, name="param")
app.add_typer(service_app, name="service")


@contextlib.contextmanager
def cli_node(spin: bool = True) -> Iterator:
    """A hidden node for one command: joins the bus (a peer session, said so, when no router answers)."""
    from tether.bus import Node, init, shutdown, spin_in_background

    init()
    node = Node(f"_tether_cli_{os.getpid()}", enable_telemetry=False, start_parameter_services=False)
    spinner = spin_in_background(node) if spin else None
    try:
        yield node
    finally:
        if spinner is not None:
            spinner.stop()
        node.destroy_node()
        shutdown()


def _yaml_arg(text: str) -> dict:
    try:
        value = yaml.safe_load(text) if text else {}
    except yaml.YAMLError as exc:
        raise typer.BadParameter(f'not valid YAML: {exc}; e.g. "{{data: hi}}"') from None
    if not isinstance(value, dict):
        raise typer.BadParameter(f'the message must be a YAML mapping, e.g. "{{data: hi}}", but got {text!r}')
    return value


def _topic_type(node, topic: str, given: str | None, wait: float = 2.0) -> str:
    if given:
        return given
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        for name, types in node.get_topic_names_and_types():
            if name == topic and types:
                return types[0]
        time.sleep(0.2)
    err.print(
        f"[red]no publisher of {topic} is on the bus[/]; give the type: tether topic echo {topic} pkg/msg/Type"
    )
    raise typer.Exit(1)


# -- topic -------------------------------------------------------------------------------------------
@topic_app.command("list")
def topic_list(show_types: bool = typer.Option(False, "-t", "--show-types")) -> None:
    """Topics that have a publisher or a subscriber now."""
    with cli_node(spin=False) as node:
        for name, types in node.get_topic_names_and_types():
            console.print(f"{name} [{', '.join(types)}]" if show_types else name, highlight=False)


@topic_app.command("echo")
def topic_echo(
    topic: str,
    msg_type: Optional[str] = typer.Argument(
        None, help="e.g. std_msgs/msg/String; found on the bus if omitted"
    ),
    once: bool = typer.Option(False, "--once"),
    count: int = typer.Option(0, "--count", "-n", help="Stop after N messages (0 = never)."),
    timeout: float = typer.Option(0.0, "--timeout", help="Give up after S seconds (0 = never)."),
) -> None:
    """Print messages on a topic as YAML."""
    from tether.bus.messages import message_to_dict

    want = 1 if once else count
    got = threading.Event()
    seen = [0]
    with cli_node() as node:
        tname = _topic_type(node, node.resolve_topic_name(topic), msg_type)

        def on_msg(msg) -> None:
            if want and seen[0] >= want:
                return
            seen[0] += 1
            sys.stdout.write(yaml.safe_dump(message_to_dict(msg), sort_keys=False) + "---\n")
            sys.stdout.flush()
            if want and seen[0] >= want:
                got.set()

        node.create_subscription(tname, topic, on_msg, 100)
        deadline = time.monotonic() + timeout if timeout else None
        try:
            while not got.is_set():
                if deadline and time.monotonic() > deadline:
                    err.print(f"no message on {topic} within {timeout:g} s")
                    raise typer.Exit(1)
                got.wait(0.1)
        except KeyboardInterrupt:
            pass


class RateWindow:
    """Arrival times of the last `size` messages, for `topic hz`'s reports (as `ros2 topic hz` computes them).

    `add()` may be called from a delivery thread while another thread calls `report()`.
    """

    def __init__(self, size: int) -> None:
        if size < 2:
            raise ValueError(f"the window must hold at least 2 messages, but got {size}")
        self._times: collections.deque[float] = collections.deque(maxlen=size)
        self._new = 0
        self._lock = threading.Lock()

    def add(self, t: float) -> None:
        with self._lock:
            self._times.append(t)
            self._new += 1

    def report(self) -> dict[str, float] | None:
        """Rate and inter-arrival statistics over the window; None when no message came since the last."""
        import numpy as np

        with self._lock:
            new, self._new = self._new, 0
            times = np.fromiter(self._times, dtype=np.float64, count=len(self._times))
        gaps = np.diff(times)
        if not new or not gaps.size:
            return None
        return {
            "rate": 1.0 / gaps.mean(),
            "min": gaps.min(),
            "max": gaps.max(),
            "std": gaps.std(),
            "window": times.size,
        }


@topic_app.command("hz")
def topic_hz(
    topic: str,
    msg_type: Optional[str] = typer.Argument(None),
    window: int = typer.Option(
        10_000, "--window", "-w", min=2, help="Messages the rate is computed over (as ros2 topic hz)."
    ),
    duration: float = typer.Option(
        0.0, "--duration", help="Stop after S seconds, one report a second (0 = until Ctrl-C)."
    ),
) -> None:
    """Average rate of a topic from arrival times, reported each second ("no new messages" when none came)."""
    rates = RateWindow(window)
    with cli_node() as node:
        tname = _topic_type(node, node.resolve_topic_name(topic), msg_type)
        node.create_subscription(tname, topic, lambda data: rates.add(time.monotonic()), 1000, raw=True)
        try:
            for _ in itertools.count() if not duration else range(max(1, round(duration))):
                time.sleep(1.0)
                r = rates.report()
                if r is None:
                    console.print("no new messages", highlight=False)
                    continue
                console.print(
                    f"average rate: {r['rate']:.3f}\n\tmin: {r['min']:.3f}s max: {r['max']:.3f}s "
                    f"std dev: {r['std']:.5f}s window: {r['window']}",
                    highlight=False,
                )
        except KeyboardInterrupt:
            pass


@topic_app.command("pub")
def topic_pub(
    topic: str,
    msg_type: str,
    values: str = typer.Argument("{}", help='The message as YAML, e.g. "{data: hi}".'),
    once: bool = typer.Option(False, "--once", "-1"),
    rate: float = typer.Option(1.0, "--rate", "-r"),
    times: int = typer.Option(0, "--times", "-t", help="Publish N times, then exit (0 = until Ctrl-C)."),
    transient_local: bool = typer.Option(False, "--transient-local"),
) -> None:
    """Publish a message (ROS 2 syntax: tether topic pub --once /chatter std_msgs/msg/String "{data: hi}")."""
    from tether.bus import QoSProfile
    from tether.bus.messages import MessageError, message_from_dict
    from tether.bus.qos import DurabilityPolicy

    try:
        msg = message_from_dict(msg_type, _yaml_arg(values))
    except MessageError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    qos = QoSProfile(
        depth=10,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if transient_local else DurabilityPolicy.VOLATILE,
    )
    n = 1 if once else times
    with cli_node(spin=False) as node:
        pub = node.create_publisher(msg_type, topic, qos)
        time.sleep(0.5)  # subscribers' routes settle, as ros2 topic pub waits for matching
        sent = 0
        try:
            while not n or sent < n:
                pub.publish(msg)
                sent += 1
                console.print(f"publishing #{sent}: {values}", highlight=False)
                if not n or sent < n:
                    time.sleep(1.0 / rate)
            if transient_local and once:
                time.sleep(1.0)
        except KeyboardInterrupt:
            pass
        time.sleep(0.2)


# -- node ----------------------------------------------------------------------------------------------
@node_app.command("list")
def node_list() -> None:
    """Nodes alive on the bus (their liveliness tokens)."""
    with cli_node(spin=False) as node:
        for name, ns in node.get_node_names_and_namespaces():
            if not name.startswith("_tether_cli_"):
                console.print(f"{ns.rstrip('/')}/{name}", highlight=False)


# -- param -----------------------------------------------------------------------------------------------
def _param_call(node, target: str, srv: str, request, timeout: float = 5.0):
    from tether.bus import ServiceCallError, get_srv_type

    st = get_srv_type(f"rcl_interfaces/srv/{srv}")
    name = {
        "GetParameters": "get_parameters",
        "SetParameters": "set_parameters",
        "ListParameters": "list_parameters",
    }
    name.update({"DescribeParameters": "describe_parameters"})
    client = node.create_client(st, f"{target.rstrip('/')}/{name[srv]}")
    try:
        return client.call(request(st), timeout)
    except ServiceCallError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from None


@param_app.command("list")
def param_list(target: str = typer.Argument(..., help="The node, e.g. /talker")) -> None:
    with cli_node(spin=False) as node:
        resp = _param_call(node, target, "ListParameters", lambda st: st.Request(prefixes=[], depth=0))
        for name in resp.result.names:
            console.print(f"  {name}", highlight=False)


@param_app.command("get")
def param_get(target: str, name: str) -> None:
    from tether.bus.parameters import from_parameter_value

    with cli_node(spin=False) as node:
        resp = _param_call(node, target, "GetParameters", lambda st: st.Request(names=[name]))
        value = from_parameter_value(resp.values[0])
        if value is None:
            err.print(f"parameter {name!r} is not set on {target}")
            raise typer.Exit(1)
        console.print(f"{value!r}", highlight=False)


@param_app.command("set")
def param_set(target: str, name: str, value: str) -> None:
    """Set a parameter; the value is YAML (10, 0.5, true, hello, [1, 2])."""
    from tether.bus.messages import get_type
    from tether.bus.parameters import to_parameter_value

    P = get_type("rcl_interfaces/msg/Parameter")
    parsed = yaml.safe_load(value)
    with cli_node(spin=False) as node:
        resp = _param_call(
            node,
            target,
            "SetParameters",
            lambda st: st.Request(parameters=[P(name=name, value=to_parameter_value(parsed))]),
        )
        result = resp.results[0]
        if result.successful:
            console.print("Set parameter successful")
        else:
            err.print(f"[red]Setting parameter failed[/]: {result.reason}")
            raise typer.Exit(1)


@param_app.command("dump")
def param_dump(target: str) -> None:
    """Every parameter of a node, as a ROS 2 parameters file."""
    from tether.bus.parameters import from_parameter_value

    with cli_node(spin=False) as node:
        names = list(
            _param_call(
                node, target, "ListParameters", lambda st: st.Request(prefixes=[], depth=0)
            ).result.names
        )
        values = _param_call(node, target, "GetParameters", lambda st: st.Request(names=names)).values
        params = {n: from_parameter_value(v) for n, v in zip(names, values)}
        print(yaml.safe_dump({target: {"ros__parameters": params}}, sort_keys=True), end="")


@param_app.command("load")
def param_load(target: str, path: Path) -> None:
    """Set a node's parameters from a ROS 2 parameters file."""
    from tether.bus.args import ArgumentError, load_params_file
    from tether.bus.messages import get_type
    from tether.bus.parameters import to_parameter_value

    fqn = "/" + target.strip("/")
    try:
        values = load_params_file(path, fqn)
    except ArgumentError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    P = get_type("rcl_interfaces/msg/Parameter")
    with cli_node(spin=False) as node:
        resp = _param_call(
            node,
            target,
            "SetParameters",
            lambda st: st.Request(
                parameters=[P(name=n, value=to_parameter_value(v)) for n, v in values.items()]
            ),
        )
        failed = 0
        for (n, _), r in zip(values.items(), resp.results):
            if r.successful:
                console.print(f"Set parameter {n} successful", highlight=False)
            else:
                failed += 1
                err.print(f"[red]Set parameter {n} failed[/]: {r.reason}")
        if failed:
            raise typer.Exit(1)


# -- service ----------------------------------------------------------------------------------------------
@service_app.command("list")
def service_list(show_types: bool = typer.Option(False, "-t", "--show-types")) -> None:
    with cli_node(spin=False) as node:
        for name, types in node.get_service_names_and_types():
            console.print(f"{name} [{', '.join(types)}]" if show_types else name, highlight=False)


@service_app.command("call")
def service_call(
    service: str, srv_type: str, values: str = typer.Argument("{}"), timeout: float = typer.Option(5.0)
) -> None:
    """Call a service (ROS 2 syntax: tether service call /x std_srvs/srv/Trigger "{}")."""
    from tether.bus import ServiceCallError, get_srv_type
    from tether.bus.messages import MessageError, message_from_dict, message_to_dict

    with cli_node(spin=False) as node:
        try:
            st = get_srv_type(srv_type)
            request = message_from_dict(st.request_name, _yaml_arg(values))
            response = node.create_client(st, service).call(request, timeout)
        except (MessageError, ServiceCallError) as exc:
            err.print(f"[red]{exc}[/]")
            raise typer.Exit(1) from None
        print(yaml.safe_dump(message_to_dict(response), sort_keys=False), end="")


# -- top, metrics, record, play, up ---------------------------------------------------------------------------
from tether import _cli_monitor  # noqa: E402,F401  (top, metrics, record, play, up)
