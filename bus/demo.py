"""The demo talker and listener: the smallest nodes on the bus (`launch/demo.launch.yaml`)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from tether.bus.messages import get_type
from tether.bus.node import Node
from tether.bus.run import run_node

__all__ = ["Listener", "Talker", "listener_main", "talker_main"]

String = get_type("std_msgs/msg/String")


class Talker(Node):
    """Publishes 'hello world: N' on `chatter` at `rate` Hz."""

    def __init__(self, **kwargs) -> None:
        super().__init__("talker", **kwargs)
        self.rate = self.declare_parameter(
            "rate", 10.0, description="Messages per second", min=0.1, max=1000.0
        )
        self.pub = self.create_publisher(String, "chatter", 10)
        self.count = 0
        self.timer = self.create_timer(1.0 / self.rate.value, self.tick)
        self.add_on_set_parameters_callback(self._on_set)

    def tick(self) -> None:
        self.count += 1
        self.pub.publish(String(data=f"hello world: {self.count}"))

    def _on_set(self, params):
        from tether.bus.parameters import SetParametersResult

        for p in params:
            if p.name == "rate":
                self.timer.destroy()
                self.timer = self.create_timer(1.0 / p.value, self.tick)
        return SetParametersResult(True)


class Listener(Node):
    """Logs what arrives on `chatter`."""

    def __init__(self, **kwargs) -> None:
        super().__init__("listener", **kwargs)
        self.received = 0
        self.create_subscription(String, "chatter", self.on_msg, 10)

    def on_msg(self, msg) -> None:
        self.received += 1
        if self.received % 10 == 1:
            self.get_logger().info("heard %r (%d so far)", msg.data, self.received)


def talker_main(args: Sequence[str] | None = None) -> None:
    sys.exit(run_node(Talker, args))


def listener_main(args: Sequence[str] | None = None) -> None:
    sys.exit(run_node(Listener, args))
