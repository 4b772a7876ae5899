"""ROS 2 message and service types, and their CDR encoding (the ROS 2 wire format).

Types come from rosbags; encoding and decoding use codecs compiled per type (`tether.bus.cdr`,
byte-for-byte rosbags' CDR, about twice as fast), with rosbags as the fallback.

One typestore per process holds the standard ROS 2 types rosbags knows (Humble), tether's own
`.msg` files from `ros_ws/src/tether_msgs/msg/`, and the service types the bus itself serves
(`rcl_interfaces/srv/*`, `std_srvs/srv/*`) as `<srv>_Request` / `<srv>_Response` messages,
exactly as ROS 2 generates them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from importlib import resources
from typing import Any

from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from tether.bus.cdr import CdrError, Codec, compile_codec

__all__ = [
    "MessageError",
    "SrvType",
    "codec",
    "default_message",
    "deserialize",
    "message_from_dict",
    "message_to_dict",
    "get_srv_type",
    "get_type",
    "message_definition",
    "serialize",
    "serialize_buffer",
    "type_name",
    "typestore",
]


class MessageError(ValueError):
    """A message or type is not what the rule requires (unknown type, bad payload). Recoverable."""


# Service definitions as ROS 2 ships them (rcl_interfaces/srv, std_srvs/srv): request, response.
_SERVICES: dict[str, tuple[str, str]] = {
    "rcl_interfaces/srv/GetParameters": (
        "string[] names",
        "rcl_interfaces/ParameterValue[] values",
    ),
    "rcl_interfaces/srv/SetParameters": (
        "rcl_interfaces/Parameter[] parameters",
        "rcl_interfaces/SetParametersResult[] results",
    ),
    "rcl_interfaces/srv/SetParametersAtomically": (
        "rcl_interfaces/Parameter[] parameters",
        "rcl_interfaces/SetParametersResult result",
    ),
    "rcl_interfaces/srv/ListParameters": (
        "uint64 DEPTH_RECURSIVE=0\nstring[] prefixes\nuint64 depth",
        "rcl_interfaces/ListParametersResult result",
    ),
    "rcl_interfaces/srv/DescribeParameters": (
        "string[] names",
        "rcl_interfaces/ParameterDescriptor[] descriptors",
    ),
    "rcl_interfaces/srv/GetParameterTypes": (
        "string[] names",
        "uint8[] types",
    ),
    "std_srvs/srv/Trigger": (
        "uint8 structure_needs_at_least_one_member",
        "bool success\nstring message",
    ),
    "std_srvs/srv/SetBool": (
        "bool data",
        "bool success\nstring message",
    ),
    "std_srvs/srv/Empty": (
        "uint8 structure_needs_at_least_one_member",
        "uint8 structure_needs_at_least_one_member",
    ),
}


def _build_typestore():
    store = get_typestore(Stores.ROS2_HUMBLE)
    defs: dict = {}
    msg_dir = resources.files("tether.msgs") / "msg"
    for entry in sorted(msg_dir.iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".msg"):
            defs.update(get_types_from_msg(entry.read_text(), f"tether_msgs/msg/{entry.name[:-4]}"))
    for srv, (req, resp) in _SERVICES.items():
        # rosbags files a name with two path parts under '<pkg>/<x>/msg/'; ROS 2 names a service's
        # messages '<pkg>/srv/<Srv>_Request', so the entries are re-keyed to that name.
        for suffix, text in (("_Request", req), ("_Response", resp)):
            (entry,) = get_types_from_msg(text, f"{srv}{suffix}").values()
            defs[f"{srv}{suffix}"] = entry
    store.register(defs)
    return store


typestore = _build_typestore()


def _normalise(name: str) -> str:
    """Accept 'std_msgs/msg/String', 'std_msgs/String' and 'std_msgs.msg.String'."""
    name = name.strip().replace(".", "/")
    parts = name.split("/")
    if len(parts) == 2:
        parts = [parts[0], "msg", parts[1]]
    return "/".join(parts)


def get_type(name: str) -> type:
    """The message class for a ROS 2 type name, e.g. get_type("sensor_msgs/msg/LaserScan")."""
    full = _normalise(name)
    try:
        return typestore.types[full]
    except KeyError:
        raise MessageError(
            f"unknown message type {name!r}: the type must be a ROS 2 type rosbags knows or a "
            f".msg file in ros_ws/src/tether_msgs/msg/ (e.g. std_msgs/msg/String)"
        ) from None


def type_name(msg_or_class: Any) -> str:
    """The ROS 2 type name of a message instance, a message class, or a type-name string."""
    if isinstance(msg_or_class, str):
        get_type(msg_or_class)
        return _normalise(msg_or_class)
    name = getattr(msg_or_class, "__msgtype__", None)
    if name is None:
        raise MessageError(
            f"{msg_or_class!r} is not a ROS 2 message: pass a class from tether.bus.messages.get_type(...)"
        )
    return name


@dataclass(frozen=True)
class SrvType:
    """A service type: its name and its request and response message classes."""

    name: str
    Request: type
    Response: type

    @property
    def request_name(self) -> str:
        return f"{self.name}_Request"

    @property
    def response_name(self) -> str:
        return f"{self.name}_Response"


def get_srv_type(name: str | SrvType) -> SrvType:
    """The service type for a name such as 'rcl_interfaces/srv/GetParameters'."""
    if isinstance(name, SrvType):
        return name
    full = name.strip().replace(".", "/")
    parts = full.split("/")
    if len(parts) == 2:
        full = f"{parts[0]}/srv/{parts[1]}"
    try:
        return SrvType(full, typestore.types[f"{full}_Request"], typestore.types[f"{full}_Response"])
    except KeyError:
        raise MessageError(f"unknown service type {name!r}; known: {', '.join(sorted(_SERVICES))}") from None


_codecs: dict[str, Codec | None] = {}


def codec(name: str) -> Codec | None:
    """The compiled CDR codec of a type (`tether.bus.cdr`), or None where rosbags encodes it."""
    try:
        return _codecs[name]
    except KeyError:
        pass
    full = _normalise(name)
    get_type(full)  # unknown names fail here, with the rule
    built = _codecs[name] = compile_codec(full, typestore)
    return built


def serialize(msg: Any, name: str | None = None) -> bytes:
    """CDR bytes of a message (little-endian, with the 4-byte encapsulation header)."""
    return bytes(serialize_buffer(msg, name))


def serialize_buffer(msg: Any, name: str | None = None, buf: bytearray | None = None) -> bytearray:
    """CDR of a message in a bytearray: `buf` when it has the right length (every byte is
    rewritten, so a publisher reuses one buffer), else a new one. Raises MessageError when a
    field's value does not fit its type."""
    name = name or msg.__msgtype__
    compiled = codec(name)
    try:
        if compiled is not None:
            return compiled.encode(msg, buf)
        return typestore.serialize_cdr(msg, name).obj
    except CdrError as exc:
        raise MessageError(str(exc)) from exc
    except (struct.error, AttributeError, TypeError, ValueError, OverflowError) as exc:  # rosbags
        raise MessageError(f"{name} does not encode: {type(exc).__name__}: {exc}") from exc


def deserialize(data: bytes | memoryview, name: str) -> Any:
    """A message from CDR bytes; raises MessageError when the bytes do not decode as `name`.

    Array fields (images, scans, payloads) are numpy views into `data`, not copies.
    """
    compiled = codec(name)
    if not isinstance(data, memoryview):
        data = memoryview(data)  # slicing a memoryview is free
    try:
        if compiled is not None and len(data) > 1 and data[1] == 1:  # little-endian: the usual case
            return compiled.decode(data)
        return typestore.deserialize_cdr(data, name)
    except CdrError as exc:
        raise MessageError(str(exc)) from exc
    except Exception as exc:  # rosbags raises assorted errors (struct.error, IndexError, ...) on bad bytes
        raise MessageError(f"payload does not decode as {name}: {type(exc).__name__}: {exc}") from exc


def message_definition(name: str) -> str:
    """The ROS 2 message definition text (with dependencies), as MCAP's ros2msg schema wants."""
    text, _ = typestore.generate_msgdef(name, ros_version=2)
    return text


_NUMPY_OF = {
    "bool": "bool",
    "byte": "uint8",
    "char": "uint8",
    "int8": "int8",
    "uint8": "uint8",
    "int16": "int16",
    "uint16": "uint16",
    "int32": "int32",
    "uint32": "uint32",
    "int64": "int64",
    "uint64": "uint64",
    "float32": "float32",
    "float64": "float64",
}


def _default_of(field_type: tuple) -> Any:
    import numpy as np

    kind, spec = field_type
    kind = int(kind)
    if kind == 1:  # base type
        base = spec[0]
        return (
            ""
            if base == "string" or base == "wstring"
            else False
            if base == "bool"
            else 0.0
            if "float" in base
            else 0
        )
    if kind == 2:  # nested message
        return default_message(spec)
    inner, count = spec
    if int(inner[0]) == 1 and inner[1][0] in _NUMPY_OF:
        return np.zeros(count if kind == 3 else 0, dtype=_NUMPY_OF[inner[1][0]])
    return [_default_of(inner) for _ in range(count)] if kind == 3 else []


def default_message(name: str) -> Any:
    """A message of type `name` with every field at its ROS 2 default (zeros, empty strings and arrays)."""
    cls = get_type(name)
    _, fields = typestore.fielddefs[type_name(cls)]
    return cls(**{fname: _default_of(ftype) for fname, ftype in fields})


def message_from_dict(name: str, values: dict[str, Any] | None) -> Any:
    """A message from a (nested) mapping, defaults for fields not given: `tether topic pub` YAML."""
    import numpy as np

    full = type_name(name)
    msg = default_message(full)
    _, fields = typestore.fielddefs[full]
    ftypes = dict(fields)
    for key, value in (values or {}).items():
        if key not in ftypes:
            raise MessageError(f"{full} has no field {key!r}; fields: {', '.join(ftypes)}")
        kind, spec = ftypes[key]
        kind = int(kind)
        if kind == 2:
            value = message_from_dict(spec, value)
        elif kind in (3, 4):
            inner = spec[0]
            if int(inner[0]) == 2:
                value = [message_from_dict(inner[1], v) for v in value]
            elif inner[1][0] in _NUMPY_OF:
                value = np.asarray(value, dtype=_NUMPY_OF[inner[1][0]])
        elif kind == 1 and spec[0].startswith("float"):
            value = float(value)
        setattr(msg, key, value)
    return msg


def message_to_dict(msg: Any) -> Any:
    """A message as plain Python data (for echo, JSON and YAML)."""
    import numpy as np

    if hasattr(msg, "__msgtype__"):
        return {k: message_to_dict(getattr(msg, k)) for k in msg.__dataclass_fields__ if k != "__msgtype__"}
    if isinstance(msg, np.ndarray):
        return msg.tolist()
    if isinstance(msg, (list, tuple)):
        return [message_to_dict(v) for v in msg]
    if isinstance(msg, np.generic):
        return msg.item()
    return msg
