"""Quality of service, as ROS 2 has it: reliability, durability, history depth.

Mapping onto Zenoh: RELIABLE uses Zenoh's reliable channel with blocking congestion control;
BEST_EFFORT drops under congestion. TRANSIENT_LOCAL keeps the publisher's last `depth` samples
in a cache that a late-joining TRANSIENT_LOCAL subscription queries (zenoh-ext's advanced
publisher/subscriber), so `/map` or a goal reaches a node that starts later. `depth` also bounds
a subscription's queue: past it, the oldest undelivered message is dropped and counted.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "DurabilityPolicy",
    "QoSProfile",
    "ReliabilityPolicy",
    "qos_profile_parameters",
    "qos_profile_sensor_data",
    "qos_profile_services_default",
    "qos_profile_system_default",
    "qos_profile_transient_local",
    "to_qos",
]


class ReliabilityPolicy(enum.Enum):
    RELIABLE = "reliable"
    BEST_EFFORT = "best_effort"


class DurabilityPolicy(enum.Enum):
    VOLATILE = "volatile"
    TRANSIENT_LOCAL = "transient_local"


@dataclass(frozen=True)
class QoSProfile:
    """A topic's QoS. `depth`: history kept by a transient_local publisher and queue of a subscription."""

    depth: int = 10
    reliability: ReliabilityPolicy = ReliabilityPolicy.RELIABLE
    durability: DurabilityPolicy = DurabilityPolicy.VOLATILE

    def __post_init__(self) -> None:
        if not isinstance(self.depth, int) or self.depth < 1:
            raise ValueError(f"QoS depth >= 1 must hold, but got depth={self.depth!r}; use e.g. depth=10")


qos_profile_system_default = QoSProfile()
qos_profile_sensor_data = QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)
qos_profile_services_default = QoSProfile()
qos_profile_parameters = QoSProfile(depth=1000)
qos_profile_transient_local = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def to_qos(qos: QoSProfile | int) -> QoSProfile:
    """rclpy accepts a bare history depth where a profile is expected; so do we."""
    if isinstance(qos, QoSProfile):
        return qos
    if isinstance(qos, int) and not isinstance(qos, bool):
        return QoSProfile(depth=qos)
    raise TypeError(f"qos must be a QoSProfile or an int depth, but got {qos!r}")
