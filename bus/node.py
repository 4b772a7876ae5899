"""The Node: rclpy's API on tether's bus. Every node gets telemetry, parameter services and presence for free.

A node owns its publishers, subscriptions, timers, services and clients (created through it,
destroyed with it), its parameters, and an executor (single-threaded unless given another).
The same node code runs on rclpy where ROS 2 is installed (the rclpy transport).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from tether.bus.args import RosArgs, parse_ros_args
from tether.bus.clock import Clock
from tether.bus.context import Context, default_context
from tether.bus.executor import Executor, SingleThreadedExecutor
from tether.bus.graph import entity_key, node_key, parse_key
from tether.bus.messages import get_srv_type, get_type, type_name
from tether.bus.names import dotted, resolve, validate_node_name
from tether.bus.parameters import (
    Parameter,
    ParameterError,
    ParameterSpec,
    ParameterStore,
    ParameterType,
    SetParametersResult,
    from_parameter_value,
    to_parameter_value,
    type_of,
)
from tether.bus.publisher import Publisher
from tether.bus.qos import QoSProfile, to_qos
from tether.bus.service import Client, Service
from tether.bus.subscription import Subscription
from tether.bus.telemetry import Counter, LatencyWindow, TelemetryCollector
from tether.bus.timer import Timer
from tether.settings import settings

__all__ = ["Node"]


class Node:
    """A participant on the bus.

    `cli_args`: the process's argv after the program name (ROS 2's `--ros-args ...` understood),
    which sets the name, namespace, remaps and parameter overrides.
    """

    service_timeout = 10.0  # seconds a service request may wait for the node's executor

    def __init__(
        self,
        node_name: str,
        *,
        namespace: str | None = None,
        context: Context | None = None,
        cli_args: Sequence[str] | None = None,
        parameter_overrides: dict[str, Any] | None = None,
        executor: Executor | None = None,
        enable_telemetry: bool = True,
        telemetry_period: float = 1.0,
        start_parameter_services: bool = True,
    ) -> None:
        self.ros_args: RosArgs = parse_ros_args(list(cli_args or []))
        self._name = validate_node_name(self.ros_args.node_name or node_name)
        ns = self.ros_args.namespace if self.ros_args.namespace is not None else (namespace or "")
        self._namespace = "/" + ns.strip("/") if ns.strip("/") else "/"
        self._fqn = f"{self._namespace.rstrip('/')}/{self._name}"
        self._remaps = dict(self.ros_args.remaps)
        self.context = context or default_context()
        self.transport = self.context.transport
        self._max_message_bytes = settings().max_message_bytes
        self._logger = logging.getLogger(self._fqn.strip("/").replace("/", "."))
        self._entities: list[Any] = []
        self._lock = threading.RLock()
        self._executor: Executor = executor or SingleThreadedExecutor()
        self._executor.add_node(self)
        self._destroyed = False

        overrides = self.ros_args.parameter_overrides(self._fqn)
        overrides.update(parameter_overrides or {})
        self._params = ParameterStore(overrides=overrides)
        self._params.add_callback(self._apply_builtin_parameters)
        self._rate_caps: dict[str, list[Subscription]] = {}

        self.telemetry = TelemetryCollector()
        self.telemetry.queue_length = lambda: self._executor.queue_length()
        shm = getattr(self.transport, "shm", None)  # the Zenoh transport's pool for large payloads
        if shm is not None:
            self.telemetry.add_source(lambda: {"msgs.shm": shm.puts, "msgs.shm_fallback": shm.fallbacks})
        self._clock = Clock(False)
        use_sim = self.declare_parameter("use_sim_time", False, description="Use /clock instead of wall time")
        self._set_use_sim_time(bool(use_sim.value))

        self._tokens = [
            self.transport.declare_token(node_key(self._fqn, os.getpid(), self.transport.identity()))
        ]
        if start_parameter_services:
            self._start_parameter_services()
        self._telemetry_stop = threading.Event()
        self._telemetry_thread: threading.Thread | None = None
        if enable_telemetry:
            self._telemetry_pub = self.create_publisher(
                get_type("tether_msgs/msg/Telemetry"), "~/telemetry", QoSProfile(depth=10)
            )
            self._telemetry_period = telemetry_period
            self._telemetry_thread = threading.Thread(
                target=self._telemetry_loop, name=f"tether-telemetry-{self._name}", daemon=True
            )
            self._telemetry_thread.start()

    # -- identity -------------------------------------------------------------------------------
    def get_name(self) -> str:
        return self._name

    def get_namespace(self) -> str:
        return self._namespace

    def get_fully_qualified_name(self) -> str:
        return self._fqn

    def get_logger(self) -> logging.Logger:
        return self._logger

    def get_clock(self) -> Clock:
        return self._clock

    @property
    def executor(self) -> Executor:
        return self._executor

    def resolve_topic_name(self, topic: str) -> str:
        return resolve(topic, self._namespace, self._name, self._remaps)

    # -- entities -------------------------------------------------------------------------------
    def create_publisher(self, msg_type: Any, topic: str, qos_profile: QoSProfile | int = 10) -> Publisher:
        qos = to_qos(qos_profile)
        tname = type_name(msg_type)
        cls = get_type(tname)
        full = self.resolve_topic_name(topic)
        counter = self.telemetry.pub_counts.setdefault(dotted(topic.lstrip("~")), Counter())
        raw = self.transport.publisher(full, tname, qos)
        token = self.transport.declare_token(entity_key("pub", full, tname, self._fqn))
        pub = Publisher(self, cls, tname, full, topic, qos, raw, token, counter)
        self._keep(pub)
        return pub

    def create_subscription(
        self,
        msg_type: Any,
        topic: str,
        callback: Callable[[Any], None],
        qos_profile: QoSProfile | int = 10,
        *,
        raw: bool = False,
    ) -> Subscription:
        qos = to_qos(qos_profile)
        tname = type_name(msg_type)
        cls = get_type(tname)
        full = self.resolve_topic_name(topic)
        key = dotted(topic.lstrip("~"))
        counter = self.telemetry.recv_counts.setdefault(key, Counter())
        e2e = self.telemetry.e2e_latency.setdefault(key, LatencyWindow())
        sub = Subscription(self, cls, tname, full, topic, qos, callback, counter, e2e, raw=raw)
        cap_name = f"rate_cap.{key}"
        if not self._params.has(cap_name):
            self.declare_parameter(
                cap_name,
                0.0,
                description=f"Deliver at most this many messages per second of {full} to this node (0 = no cap)",
                min=0.0,
                max=10000.0,
            )
        self._rate_caps.setdefault(cap_name, []).append(sub)
        sub.set_rate_cap(float(self._params.get(cap_name)))
        sub._handle = self.transport.subscribe(full, tname, qos, sub._on_sample)
        sub._token = self.transport.declare_token(entity_key("sub", full, tname, self._fqn))
        self._keep(sub)
        return sub

    def create_timer(self, timer_period_sec: float, callback: Callable[[], None]) -> Timer:
        timer = Timer(self, timer_period_sec, callback)
        self._executor.add_timer(timer)
        self._keep(timer)
        return timer

    def create_service(self, srv_type: Any, srv_name: str, callback: Callable[[Any, Any], Any]) -> Service:
        st = get_srv_type(srv_type)
        full = self.resolve_topic_name(srv_name)
        srv = Service(self, st, full, callback)
        srv._handle = self.transport.serve(full, st.name, srv._handle_request)
        srv._token = self.transport.declare_token(entity_key("srv", full, st.name, self._fqn))
        self._keep(srv)
        return srv

    def create_client(self, srv_type: Any, srv_name: str) -> Client:
        client = Client(self, get_srv_type(srv_type), self.resolve_topic_name(srv_name))
        self._keep(client)
        return client

    def _keep(self, entity: Any) -> None:
        with self._lock:
            self._entities.append(entity)

    def _forget(self, entity: Any) -> None:
        with self._lock:
            if entity in self._entities:
                self._entities.remove(entity)

    # -- callbacks --------------------------------------------------------------------------------
    def _attach_executor(self, executor: Executor) -> None:
        if executor is self._executor:
            return
        old, self._executor = self._executor, executor
        for entity in list(self._entities):
            if isinstance(entity, Timer):
                old.remove_timer(entity)
                executor.add_timer(entity)

    def _run_callback(self, fn: Callable, args: tuple) -> float:
        """Run one callback; returns the seconds it took."""
        start = time.perf_counter()
        try:
            fn(*args)
        except Exception:
            # A callback's exception is the node's bug: report it, keep the node alive, as rclpy logs it.
            self._logger.exception("callback %s raised", getattr(fn, "__qualname__", fn))
        finally:
            took = time.perf_counter() - start
            self.telemetry.callback_latency.add(took * 1e3)
        return took

    # -- parameters -------------------------------------------------------------------------------
    def declare_parameter(
        self,
        name: str,
        value: Any = None,
        descriptor: Any = None,
        *,
        description: str = "",
        min: float | None = None,
        max: float | None = None,
        step: float | None = None,
        choices: Sequence[Any] | None = None,
        read_only: bool = False,
        dynamic_typing: bool = False,
    ) -> Parameter:
        """Declare a parameter; its type is the default's. A ROS 2 ParameterDescriptor may give the bounds."""
        if descriptor is not None:
            description = description or descriptor.description
            read_only = read_only or descriptor.read_only
            dynamic_typing = dynamic_typing or descriptor.dynamic_typing
            for rng in list(descriptor.floating_point_range) + list(descriptor.integer_range):
                min, max = rng.from_value, rng.to_value
                step = rng.step or None
        if min is not None and max is not None and min > max:
            raise ParameterError(f"parameter {name!r}: min <= max must hold, but got (min={min}, max={max})")
        ptype = type_of(value) if value is not None else ParameterType.NOT_SET
        spec = ParameterSpec(
            name=name,
            type_=ptype,
            description=description,
            min=min,
            max=max,
            step=step,
            choices=tuple(choices) if choices is not None else None,
            read_only=read_only,
            dynamic_typing=dynamic_typing or value is None,
        )
        return Parameter(name, self._params.declare(spec, value))

    def declare_parameters(self, namespace: str, parameters: Sequence[tuple]) -> list[Parameter]:
        prefix = f"{namespace}." if namespace else ""
        return [self.declare_parameter(prefix + p[0], *p[1:]) for p in parameters]

    def has_parameter(self, name: str) -> bool:
        return self._params.has(name)

    def get_parameter(self, name: str) -> Parameter:
        return Parameter(name, self._params.get(name))

    def get_parameters(self, names: Sequence[str]) -> list[Parameter]:
        return [self.get_parameter(n) for n in names]

    def get_parameter_spec(self, name: str) -> ParameterSpec:
        return self._params.spec(name)

    def set_parameters(self, parameters: Sequence[Parameter]) -> list[SetParametersResult]:
        return [self._params.set_atomically([p]) for p in parameters]

    def set_parameters_atomically(self, parameters: Sequence[Parameter]) -> SetParametersResult:
        return self._params.set_atomically(list(parameters))

    def add_on_set_parameters_callback(
        self, callback: Callable[[list[Parameter]], SetParametersResult]
    ) -> None:
        self._params.add_callback(callback)

    def remove_on_set_parameters_callback(self, callback: Callable) -> None:
        self._params.remove_callback(callback)

    def _apply_builtin_parameters(self, params: list[Parameter]) -> SetParametersResult:
        for p in params:
            if p.name in self._rate_caps:
                for sub in self._rate_caps[p.name]:
                    sub.set_rate_cap(float(p.value))
            elif p.name == "use_sim_time":
                self._set_use_sim_time(bool(p.value))
        return SetParametersResult(True)

    def _set_use_sim_time(self, on: bool) -> None:
        if on and not self._clock.use_sim_time:
            self.create_subscription(
                get_type("rosgraph_msgs/msg/Clock"), "/clock", self._clock._on_clock, QoSProfile(depth=1)
            )
        self._clock.use_sim_time = on

    def _start_parameter_services(self) -> None:
        Result = get_type("rcl_interfaces/msg/SetParametersResult")
        ListResult = get_type("rcl_interfaces/msg/ListParametersResult")

        def to_params(msgs) -> list[Parameter]:
            return [Parameter(m.name, from_parameter_value(m.value)) for m in msgs]

        def get_parameters(req, resp):
            values = []
            for n in req.names:
                values.append(to_parameter_value(self._params.get(n) if self._params.has(n) else None))
            resp.values = values
            return resp

        def set_parameters(req, resp):
            results = []
            for p in to_params(req.parameters):
                r = self._params.set_atomically([p])
                results.append(Result(successful=r.successful, reason=r.reason))
            resp.results = results
            return resp

        def set_atomically(req, resp):
            r = self._params.set_atomically(to_params(req.parameters))
            resp.result = Result(successful=r.successful, reason=r.reason)
            return resp

        def list_parameters(req, resp):
            names = self._params.names()
            if req.prefixes:
                names = [n for n in names if any(n == p or n.startswith(p + ".") for p in req.prefixes)]
            prefixes = sorted({n.rsplit(".", 1)[0] for n in names if "." in n})
            resp.result = ListResult(names=names, prefixes=prefixes)
            return resp

        def describe_parameters(req, resp):
            out = []
            for n in req.names:
                if not self._params.has(n):
                    raise ParameterError(f"parameter {n!r} is not declared")
                out.append(self._params.spec(n).to_descriptor())
            resp.descriptors = out
            return resp

        def get_parameter_types(req, resp):
            import numpy as np

            resp.types = np.asarray(
                [int(type_of(self._params.get(n))) if self._params.has(n) else 0 for n in req.names],
                dtype=np.uint8,
            )
            return resp

        for srv, name, cb in (
            ("rcl_interfaces/srv/GetParameters", "~/get_parameters", get_parameters),
            ("rcl_interfaces/srv/SetParameters", "~/set_parameters", set_parameters),
            ("rcl_interfaces/srv/SetParametersAtomically", "~/set_parameters_atomically", set_atomically),
            ("rcl_interfaces/srv/ListParameters", "~/list_parameters", list_parameters),
            ("rcl_interfaces/srv/DescribeParameters", "~/describe_parameters", describe_parameters),
            ("rcl_interfaces/srv/GetParameterTypes", "~/get_parameter_types", get_parameter_types),
        ):
            self.create_service(srv, name, cb)

    # -- telemetry --------------------------------------------------------------------------------
    def _telemetry_loop(self) -> None:
        Telemetry = get_type("tether_msgs/msg/Telemetry")
        Metric = get_type("tether_msgs/msg/Metric")
        while not self._telemetry_stop.wait(self._telemetry_period):
            try:
                metrics, window = self.telemetry.snapshot()
                msg = Telemetry(
                    stamp=self._clock.now().to_msg(),
                    node=self._name,
                    namespace=self._namespace,
                    pid=os.getpid(),
                    window_s=window,
                    metrics=[Metric(name=k, value=float(v)) for k, v in sorted(metrics.items())],
                )
                self._telemetry_pub.publish(msg)
            except Exception:
                if self._destroyed or not self.context.ok():
                    return
                self._logger.exception("telemetry publish failed")

    # -- graph ------------------------------------------------------------------------------------
    def _graph(self, kind: str) -> list:
        entries = [parse_key(k) for k in self.transport.query_tokens(f"@tether/{kind}/**")]
        return [e for e in entries if e is not None]

    def get_node_names_and_namespaces(self) -> list[tuple[str, str]]:
        out = set()
        for e in self._graph("node"):
            ns, _, name = e.name.rpartition("/")
            out.add((name, ns or "/"))
        return sorted(out)

    def get_node_names(self) -> list[str]:
        return [n for n, _ in self.get_node_names_and_namespaces()]

    def get_topic_names_and_types(self) -> list[tuple[str, list[str]]]:
        topics: dict[str, set[str]] = {}
        for kind in ("pub", "sub"):
            for e in self._graph(kind):
                if "*" not in e.name:  # a wildcard subscription is not a topic
                    topics.setdefault(e.name, set()).add(e.type_name)
        return [(t, sorted(ts)) for t, ts in sorted(topics.items())]

    def get_service_names_and_types(self, filter_name: str | None = None) -> list[tuple[str, list[str]]]:
        services: dict[str, set[str]] = {}
        for e in self._graph("srv"):
            if filter_name is None or e.name == filter_name:
                services.setdefault(e.name, set()).add(e.type_name)
        return [(s, sorted(ts)) for s, ts in sorted(services.items())]

    def count_publishers(self, topic: str) -> int:
        full = self.resolve_topic_name(topic)
        return sum(1 for e in self._graph("pub") if e.name == full)

    def count_subscribers(self, topic: str) -> int:
        full = self.resolve_topic_name(topic)
        return sum(1 for e in self._graph("sub") if e.name == full)

    # -- end --------------------------------------------------------------------------------------
    def destroy_node(self) -> None:
        """Undeclare everything this node created; the process's session stays for other nodes."""
        if self._destroyed:
            return
        self._destroyed = True
        self._telemetry_stop.set()
        if self._telemetry_thread is not None:
            self._telemetry_thread.join(timeout=2)
        for entity in list(reversed(self._entities)):
            try:
                entity.destroy()
            except Exception:
                self._logger.debug("destroying %r failed", entity, exc_info=True)
        for token in self._tokens:
            token.close()
        self._executor.remove_node(self)

    def __enter__(self) -> Node:
        return self

    def __exit__(self, *exc) -> None:
        self.destroy_node()
