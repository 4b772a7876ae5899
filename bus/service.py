"""Services and clients over the transport's request/reply (Zenoh queryables), with ROS 2 service types.

A service's callback runs on its node's executor, like any callback: `callback(request, response)`
fills and returns the response (rclpy's signature). A client's `call` blocks the calling thread
(never call it from the same node's single-threaded executor); `call_async` returns a Future.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tether.bus.messages import SrvType, default_message, deserialize, serialize
from tether.bus.transport._base import Closable, ServiceCallError

if TYPE_CHECKING:
    from tether.bus.node import Node

__all__ = ["Client", "Service", "ServiceCallError"]

_pool = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="tether-client")


class Service:
    def __init__(self, node: Node, srv_type: SrvType, name: str, callback: Callable[[Any, Any], Any]) -> None:
        self.node = node
        self.srv_type = srv_type
        self.srv_name = name
        self.callback = callback
        self._handle: Closable | None = None
        self._token: Closable | None = None

    def _handle_request(self, payload: bytes, caller: str) -> bytes:
        """Transport thread: decode, run the callback on the executor, wait, encode."""
        request = deserialize(payload, self.srv_type.request_name)
        future: concurrent.futures.Future = concurrent.futures.Future()

        def run() -> None:
            try:
                response = self.callback(request, self._empty_response())
                future.set_result(response)
            except Exception as exc:
                future.set_exception(exc)

        self.node.executor.post(run)
        response = future.result(timeout=self.node.service_timeout)
        return serialize(response, self.srv_type.response_name)

    def _empty_response(self) -> Any:
        return default_message(self.srv_type.response_name)

    def destroy(self) -> None:
        for h in (self._handle, self._token):
            if h is not None:
                h.close()
        self.node._forget(self)


class Client:
    def __init__(self, node: Node, srv_type: SrvType, name: str) -> None:
        self.node = node
        self.srv_type = srv_type
        self.srv_name = name

    def call(self, request: Any, timeout_sec: float = 5.0) -> Any:
        """Send `request`, wait for the response; raises ServiceCallError on timeout or error."""
        payload = serialize(request, self.srv_type.request_name)
        reply = self.node.transport.call(self.srv_name, self.srv_type.name, payload, timeout_sec)
        return deserialize(reply, self.srv_type.response_name)

    def call_async(self, request: Any, timeout_sec: float = 5.0) -> concurrent.futures.Future:
        return _pool.submit(self.call, request, timeout_sec)

    def service_is_ready(self) -> bool:
        return bool(self.node.get_service_names_and_types(filter_name=self.srv_name))

    def wait_for_service(self, timeout_sec: float | None = None) -> bool:
        import time

        deadline = None if timeout_sec is None else time.monotonic() + timeout_sec
        while True:
            if self.service_is_ready():
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def destroy(self) -> None:
        self.node._forget(self)
