"""Node parameters and per-subscription rate caps, set over the ROS 2 parameter services of the bus.

A rate cap is ConfigBot's "adaptor" (arXiv 2501.10513): the consumer receives a topic at a
lower rate than it is published; on the bus it is the subscriber's `rate_cap.<topic>` parameter.
Other parameters (`num_particles`, `input_resolution`, a server's `max_batch_size`) are any
the node declares. A node's knobs are set in one `set_parameters_atomically` call: all or none.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tether.edge.configbot.actuators.base import ActuationError, Actuator, ActuatorContext
from tether.edge.configbot.spec import Knob

__all__ = ["ParameterActuator", "coerce"]

_SERVICES = {
    "get": ("rcl_interfaces/srv/GetParameters", "get_parameters"),
    "set": ("rcl_interfaces/srv/SetParametersAtomically", "set_parameters_atomically"),
    "list": ("rcl_interfaces/srv/ListParameters", "list_parameters"),
    "describe": ("rcl_interfaces/srv/DescribeParameters", "describe_parameters"),
}


def coerce(knob: Knob, value: Any) -> Any:
    """A knob's value in the parameter's type (Optuna hands floats; an int parameter refuses them)."""
    if value is None or knob.choices is not None:
        return value
    if knob.type == "int":
        return int(round(float(value)))
    return float(value)


class ParameterActuator(Actuator):
    kinds = ("parameter", "rate_cap")

    def __init__(self, knobs: list[Knob], ctx: ActuatorContext, *, timeout: float = 5.0) -> None:
        super().__init__(knobs, ctx)
        self.timeout = timeout
        self._clients: dict[tuple[str, str], Any] = {}
        self._names: dict[str, str] = {}  # knob key -> parameter name on its node

    def _call(self, fqn: str, which: str, fill) -> Any:
        from tether.bus import ServiceCallError, get_srv_type
        from tether.bus.messages import default_message

        srv, suffix = _SERVICES[which]
        client = self._clients.get((fqn, which))
        if client is None:
            client = self._clients[(fqn, which)] = self.ctx.node.create_client(
                get_srv_type(srv), f"{fqn.rstrip('/')}/{suffix}"
            )
        try:
            return client.call(fill(default_message(get_srv_type(srv).request_name)), self.timeout)
        except ServiceCallError as exc:
            raise ActuationError(f"node {fqn} did not answer {suffix}: {exc}") from None
        except TimeoutError:
            raise ActuationError(f"node {fqn} did not answer {suffix} within {self.timeout:g} s") from None

    def param_name(self, key: str) -> str:
        """The parameter a knob sets; a rate cap's is found among the node's `rate_cap.*` parameters."""
        if key in self._names:
            return self._names[key]
        knob = self.knobs[key]
        if knob.kind == "parameter":
            name = knob.name or ""
        else:
            from tether.bus.names import dotted

            want = dotted(knob.topic or "")
            resp = self._call(self.node_of(key), "list", lambda r: _set(r, prefixes=[], depth=0))
            caps = [n for n in resp.result.names if n.startswith("rate_cap.")]
            exact = [n for n in caps if n == f"rate_cap.{want}"]
            suffix = [n for n in caps if n.endswith("." + want)]
            found = exact or suffix
            if len(found) != 1:
                raise ActuationError(
                    f"node {self.node_of(key)} has no single subscription to {knob.topic} to cap "
                    f"(its rate caps: {', '.join(caps) or 'none'}); fix the knob's topic"
                )
            name = found[0]
        self._names[key] = name
        return name

    def validate(self) -> list[str]:
        """Each knob's bounds within the range its node declares for the parameter (describe_parameters)."""
        problems = []
        for key, knob in self.knobs.items():
            try:
                name = self.param_name(key)
                resp = self._call(self.node_of(key), "describe", lambda r, n=name: _set(r, names=[n]))
            except ActuationError as exc:
                problems.append(f"knob {key}: {exc}")
                continue
            if not resp.descriptors:
                continue
            d = resp.descriptors[0]
            ranges = list(d.integer_range) + list(d.floating_point_range)
            if d.read_only:
                problems.append(
                    f"knob {key}: parameter {name} of {self.node_of(key)} is read-only; drop the knob"
                )
            if ranges and knob.min is not None and knob.max is not None:
                lo, hi = ranges[0].from_value, ranges[0].to_value
                if knob.min < lo or knob.max > hi:
                    problems.append(
                        f"knob {key} spans [{knob.min:g}, {knob.max:g}] but {self.node_of(key)} accepts {name} in "
                        f"[{lo:g}, {hi:g}]; narrow the knob's bounds"
                    )
        return problems

    def read(self) -> dict[str, Any]:
        from tether.bus.parameters import from_parameter_value

        out: dict[str, Any] = {}
        by_node: dict[str, list[str]] = {}
        for key in self.knobs:
            by_node.setdefault(self.node_of(key), []).append(key)
        for fqn, keys in by_node.items():
            try:
                names = [self.param_name(k) for k in keys]
                resp = self._call(fqn, "get", lambda r, names=names: _set(r, names=names))
            except ActuationError as exc:
                self.ctx.log.warning("cannot read the parameters of %s: %s", fqn, exc)
                continue
            for k, v in zip(keys, resp.values):
                value = from_parameter_value(v)
                out[k] = None if value is None else value
                if self.knobs[k].kind == "rate_cap" and value == 0.0:
                    out[k] = None  # 0 = no cap
        return out

    def apply(self, values: Mapping[str, Any]) -> None:
        from tether.bus import get_type
        from tether.bus.parameters import to_parameter_value

        P = get_type("rcl_interfaces/msg/Parameter")
        by_node: dict[str, list[Any]] = {}
        for key, value in values.items():
            knob = self.knobs[key]
            v = coerce(knob, value)
            if knob.kind == "rate_cap" and v is None:
                v = 0.0
            if v is None:
                continue  # the node's own default was never read: leave it
            by_node.setdefault(self.node_of(key), []).append(
                P(name=self.param_name(key), value=to_parameter_value(v))
            )
        for fqn, params in by_node.items():
            resp = self._call(fqn, "set", lambda r, params=params: _set(r, parameters=params))
            if not resp.result.successful:
                raise ActuationError(f"node {fqn} refused {[p.name for p in params]}: {resp.result.reason}")

    def node_restarted(self, fqn: str, pid: int, values: Mapping[str, Any]) -> None:
        mine = {k: v for k, v in values.items() if self.node_of(k) == fqn}
        if mine:
            self.apply(mine)


def _set(request: Any, **fields: Any) -> Any:
    for k, v in fields.items():
        setattr(request, k, v)
    return request
