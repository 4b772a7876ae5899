"""Node parameters with ROS 2 semantics: declared with a type and a range, set over the bus, validated.

A parameter's type is fixed at declaration (an int is accepted for a double, as ROS 2's YAML
does); ranges and choices are checked on every set; a rejected set leaves every value as it was
and says why (the rule, the value, the fix). `rcl_interfaces` messages carry them on the bus.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tether.bus.messages import get_type

__all__ = [
    "Parameter",
    "ParameterError",
    "ParameterSpec",
    "ParameterStore",
    "ParameterType",
    "SetParametersResult",
    "from_parameter_value",
    "to_parameter_value",
]


class ParameterError(ValueError):
    """A parameter operation breaks a rule (undeclared, wrong type, out of range). Recoverable."""


class ParameterType(enum.IntEnum):
    """rcl_interfaces/msg/ParameterType."""

    NOT_SET = 0
    BOOL = 1
    INTEGER = 2
    DOUBLE = 3
    STRING = 4
    BYTE_ARRAY = 5
    BOOL_ARRAY = 6
    INTEGER_ARRAY = 7
    DOUBLE_ARRAY = 8
    STRING_ARRAY = 9


def type_of(value: Any) -> ParameterType:
    if value is None:
        return ParameterType.NOT_SET
    if isinstance(value, (bool, np.bool_)):
        return ParameterType.BOOL
    if isinstance(value, (int, np.integer)):
        return ParameterType.INTEGER
    if isinstance(value, (float, np.floating)):
        return ParameterType.DOUBLE
    if isinstance(value, str):
        return ParameterType.STRING
    if isinstance(value, (bytes, bytearray)):
        return ParameterType.BYTE_ARRAY
    if isinstance(value, (list, tuple, np.ndarray)):
        items = list(value)
        if all(isinstance(v, (bool, np.bool_)) for v in items) and items:
            return ParameterType.BOOL_ARRAY
        if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in items) and items:
            return ParameterType.INTEGER_ARRAY
        if all(isinstance(v, (int, float, np.integer, np.floating)) for v in items) and items:
            return ParameterType.DOUBLE_ARRAY
        if all(isinstance(v, str) for v in items):
            return ParameterType.STRING_ARRAY
    raise ParameterError(
        f"a parameter value must be bool, int, float, str, bytes or a list of one of those, but got "
        f"{type(value).__name__} {value!r}"
    )


@dataclass(frozen=True)
class Parameter:
    """A name and a value (rclpy's Parameter, reduced to what crosses the bus)."""

    name: str
    value: Any = None

    @property
    def type_(self) -> ParameterType:
        return type_of(self.value)


@dataclass(frozen=True)
class SetParametersResult:
    successful: bool
    reason: str = ""


@dataclass(frozen=True)
class ParameterSpec:
    """How a parameter may be set: its type (from the default), bounds, choices, whether read-only."""

    name: str
    type_: ParameterType
    description: str = ""
    min: float | None = None
    max: float | None = None
    step: float | None = None
    choices: tuple[Any, ...] | None = None
    read_only: bool = False
    dynamic_typing: bool = False

    def check(self, value: Any) -> Any:
        """The value coerced to the declared type; raises ParameterError naming the rule, the value and the fix."""
        if self.read_only:
            raise ParameterError(f"parameter {self.name!r} is read-only; it is set at start-up only")
        vtype = type_of(value)
        if not self.dynamic_typing and self.type_ is not ParameterType.NOT_SET and vtype is not self.type_:
            if self.type_ is ParameterType.DOUBLE and vtype is ParameterType.INTEGER:
                value = float(value)
            elif self.type_ is ParameterType.DOUBLE_ARRAY and vtype is ParameterType.INTEGER_ARRAY:
                value = [float(v) for v in value]
            else:
                raise ParameterError(
                    f"parameter {self.name!r} is of type {self.type_.name.lower()}, but got "
                    f"{vtype.name.lower()} {value!r}; set a {self.type_.name.lower()} value"
                )
        if self.min is not None or self.max is not None:
            values = value if isinstance(value, (list, tuple)) else [value]
            for v in values:
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    continue
                lo = -np.inf if self.min is None else self.min
                hi = np.inf if self.max is None else self.max
                if not lo <= v <= hi:
                    raise ParameterError(
                        f"parameter {self.name!r} must satisfy {self.min} <= value <= {self.max}, but got "
                        f"{v}; set a value in that range"
                    )
                if self.step and self.min is not None:
                    k = round((v - self.min) / self.step)
                    if abs(self.min + k * self.step - v) > 1e-9 * max(1.0, abs(v)):
                        raise ParameterError(
                            f"parameter {self.name!r} moves in steps of {self.step} from {self.min}, but got "
                            f"{v}; e.g. {self.min + k * self.step}"
                        )
        if self.choices is not None and value not in self.choices:
            raise ParameterError(
                f"parameter {self.name!r} must be one of {list(self.choices)}, but got {value!r}"
            )
        return value

    def to_descriptor(self) -> Any:
        Descriptor = get_type("rcl_interfaces/msg/ParameterDescriptor")
        FloatRange = get_type("rcl_interfaces/msg/FloatingPointRange")
        IntRange = get_type("rcl_interfaces/msg/IntegerRange")
        fr, ir = [], []
        if self.min is not None or self.max is not None:
            lo = self.min if self.min is not None else -np.inf
            hi = self.max if self.max is not None else np.inf
            if self.type_ in (ParameterType.INTEGER, ParameterType.INTEGER_ARRAY):
                big = 2**63 - 1
                ir = [
                    IntRange(
                        from_value=int(max(lo, -big)),
                        to_value=int(min(hi, big)),
                        step=int(self.step or 0),
                    )
                ]
            else:
                fr = [FloatRange(from_value=float(lo), to_value=float(hi), step=float(self.step or 0.0))]
        constraints = f"one of {list(self.choices)}" if self.choices is not None else ""
        return Descriptor(
            name=self.name,
            type=int(self.type_),
            description=self.description,
            additional_constraints=constraints,
            read_only=self.read_only,
            dynamic_typing=self.dynamic_typing,
            floating_point_range=fr,
            integer_range=ir,
        )


def to_parameter_value(value: Any) -> Any:
    """A Python value as rcl_interfaces/msg/ParameterValue."""
    PV = get_type("rcl_interfaces/msg/ParameterValue")
    t = type_of(value)
    kw: dict[str, Any] = dict(
        type=int(t),
        bool_value=False,
        integer_value=0,
        double_value=0.0,
        string_value="",
        byte_array_value=np.zeros(0, dtype=np.uint8),
        bool_array_value=np.zeros(0, dtype=bool),
        integer_array_value=np.zeros(0, dtype=np.int64),
        double_array_value=np.zeros(0, dtype=np.float64),
        string_array_value=[],
    )
    if t is ParameterType.BOOL:
        kw["bool_value"] = bool(value)
    elif t is ParameterType.INTEGER:
        kw["integer_value"] = int(value)
    elif t is ParameterType.DOUBLE:
        kw["double_value"] = float(value)
    elif t is ParameterType.STRING:
        kw["string_value"] = value
    elif t is ParameterType.BYTE_ARRAY:
        kw["byte_array_value"] = np.frombuffer(bytes(value), dtype=np.uint8).copy()
    elif t is ParameterType.BOOL_ARRAY:
        kw["bool_array_value"] = np.asarray(value, dtype=bool)
    elif t is ParameterType.INTEGER_ARRAY:
        kw["integer_array_value"] = np.asarray(value, dtype=np.int64)
    elif t is ParameterType.DOUBLE_ARRAY:
        kw["double_array_value"] = np.asarray(value, dtype=np.float64)
    elif t is ParameterType.STRING_ARRAY:
        kw["string_array_value"] = list(value)
    return PV(**kw)


def from_parameter_value(pv: Any) -> Any:
    """rcl_interfaces/msg/ParameterValue as a Python value."""
    t = ParameterType(pv.type)
    return {
        ParameterType.NOT_SET: lambda: None,
        ParameterType.BOOL: lambda: bool(pv.bool_value),
        ParameterType.INTEGER: lambda: int(pv.integer_value),
        ParameterType.DOUBLE: lambda: float(pv.double_value),
        ParameterType.STRING: lambda: str(pv.string_value),
        ParameterType.BYTE_ARRAY: lambda: bytes(np.asarray(pv.byte_array_value, dtype=np.uint8)),
        ParameterType.BOOL_ARRAY: lambda: [bool(v) for v in pv.bool_array_value],
        ParameterType.INTEGER_ARRAY: lambda: [int(v) for v in pv.integer_array_value],
        ParameterType.DOUBLE_ARRAY: lambda: [float(v) for v in pv.double_array_value],
        ParameterType.STRING_ARRAY: lambda: [str(v) for v in pv.string_array_value],
    }[t]()


OnSetCallback = Callable[[list[Parameter]], SetParametersResult]


@dataclass
class ParameterStore:
    """A node's parameters: specs, values, overrides from the command line, on-set callbacks.

    Thread-safe: the bus serves parameter requests on the node's executor, and a node may read
    parameters from its own threads.
    """

    overrides: dict[str, Any] = field(default_factory=dict)
    _specs: dict[str, ParameterSpec] = field(default_factory=dict)
    _values: dict[str, Any] = field(default_factory=dict)
    _callbacks: list[OnSetCallback] = field(default_factory=list)
    _lock: threading.RLock = field(default_factory=threading.RLock)

    def declare(self, spec: ParameterSpec, default: Any) -> Any:
        with self._lock:
            if spec.name in self._specs:
                raise ParameterError(f"parameter {spec.name!r} is already declared; declare it once")
            value = self.overrides.get(spec.name, default)
            unlocked = ParameterSpec(**{**spec.__dict__, "read_only": False})
            if value is not None:
                try:
                    value = unlocked.check(value)
                except ParameterError as exc:
                    raise ParameterError(f"initial value of {exc}") from None
            self._specs[spec.name] = spec
            self._values[spec.name] = value
            return value

    def has(self, name: str) -> bool:
        return name in self._specs

    def get(self, name: str) -> Any:
        with self._lock:
            if name not in self._specs:
                raise ParameterError(
                    f"parameter {name!r} is not declared; declare_parameter({name!r}, ...) first"
                )
            return self._values[name]

    def spec(self, name: str) -> ParameterSpec:
        if name not in self._specs:
            raise ParameterError(f"parameter {name!r} is not declared")
        return self._specs[name]

    def names(self) -> list[str]:
        return sorted(self._specs)

    def add_callback(self, cb: OnSetCallback) -> None:
        self._callbacks.append(cb)

    def remove_callback(self, cb: OnSetCallback) -> None:
        self._callbacks.remove(cb)

    def set_atomically(self, params: list[Parameter]) -> SetParametersResult:
        """Check every parameter, ask the node's callbacks, then apply all or none."""
        with self._lock:
            checked: list[Parameter] = []
            for p in params:
                if p.name not in self._specs:
                    return SetParametersResult(
                        False, f"parameter {p.name!r} is not declared; known: {', '.join(self.names())}"
                    )
                try:
                    checked.append(Parameter(p.name, self._specs[p.name].check(p.value)))
                except ParameterError as exc:
                    return SetParametersResult(False, str(exc))
            for cb in self._callbacks:
                result = cb(checked)
                if not result.successful:
                    return result
            for p in checked:
                self._values[p.name] = p.value
            return SetParametersResult(True, "")
