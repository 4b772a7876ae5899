"""The telemetry and config bus: ROS 2 messages (CDR) over Zenoh, with an rclpy-shaped Node API.

    from tether.bus import Node, init, spin, shutdown
    from tether.bus.messages import get_type

Every node publishes telemetry at 1 Hz on `<ns>/<node>/telemetry`, serves its parameters over the
ROS 2 parameter services, caps each subscription's rate with a `rate_cap.<topic>` parameter, and
announces itself on the graph. See DESIGN.md (The bus) and tether.bus.telemetry for metric names.
"""

from tether.bus.clock import Clock, Duration, Time
from tether.bus.context import Context, init, ok, shutdown
from tether.bus.executor import (
    Executor,
    MultiThreadedExecutor,
    SingleThreadedExecutor,
    spin,
    spin_in_background,
    spin_once,
)
from tether.bus.messages import MessageError, get_srv_type, get_type
from tether.bus.node import Node
from tether.bus.parameters import Parameter, ParameterError, SetParametersResult
from tether.bus.qos import (
    DurabilityPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
    qos_profile_transient_local,
)
from tether.bus.run import run_node
from tether.bus.transport._base import ServiceCallError, TransportError

__all__ = [
    "Clock",
    "Context",
    "Duration",
    "DurabilityPolicy",
    "Executor",
    "MessageError",
    "MultiThreadedExecutor",
    "Node",
    "Parameter",
    "ParameterError",
    "QoSProfile",
    "ReliabilityPolicy",
    "ServiceCallError",
    "SetParametersResult",
    "SingleThreadedExecutor",
    "Time",
    "TransportError",
    "get_srv_type",
    "get_type",
    "init",
    "ok",
    "qos_profile_sensor_data",
    "qos_profile_transient_local",
    "run_node",
    "shutdown",
    "spin",
    "spin_in_background",
    "spin_once",
]
