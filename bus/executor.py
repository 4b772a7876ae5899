"""Executors: where a node's callbacks run. As in rclpy, one node's callbacks run one at a time by default.

Transport threads post work items to the executor's queue and return, with one exception: while a
`SingleThreadedExecutor` is idle (blocked waiting for work), a transport thread may take the
executor's callback lock and deliver a cheap subscription callback itself (`enter_inline`). That
saves the thread hand-off per message (about half a 64 KiB message's cost on the subscriber) and
keeps rclpy's guarantee: callbacks of one executor still run one at a time, in arrival order.
`SingleThreadedExecutor` runs items and timers on the thread that spins it (or inline, as above);
`MultiThreadedExecutor` runs them on a pool (callbacks of a node may then overlap).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tether.bus.node import Node
    from tether.bus.timer import Timer

__all__ = [
    "BackgroundSpin",
    "Executor",
    "MultiThreadedExecutor",
    "SingleThreadedExecutor",
    "spin",
    "spin_in_background",
    "spin_once",
]

Work = tuple[Callable, tuple]


class Executor:
    """Base: a work queue, timers, the nodes it serves. `spin()` until `shutdown()` or the deadline."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Work | None] = queue.SimpleQueue()
        self._timers: list[Timer] = []
        self._nodes: list[Node] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        # Held while any callback of this executor runs; re-entrant so a callback may spin_once.
        self._callback_lock = threading.RLock()
        self._idle = False  # True only while the spinning thread waits for work with nothing due
        self._inline_thread: int | None = None  # the thread running an inline delivery (holds the lock)

    # -- owners ---------------------------------------------------------------------------
    def add_node(self, node: Node) -> None:
        with self._lock:
            if node in self._nodes:
                return
            self._nodes.append(node)
        node._attach_executor(self)

    def remove_node(self, node: Node) -> None:
        with self._lock:
            if node in self._nodes:
                self._nodes.remove(node)

    @property
    def nodes(self) -> list[Node]:
        return list(self._nodes)

    def add_timer(self, timer: Timer) -> None:
        with self._lock:
            self._timers.append(timer)
        self._queue.put(None)  # wake the loop so it sees the new deadline

    def remove_timer(self, timer: Timer) -> None:
        with self._lock:
            if timer in self._timers:
                self._timers.remove(timer)

    def post(self, fn: Callable, *args) -> None:
        """Queue work; called from transport threads. Never blocks."""
        self._queue.put((fn, args))

    def queue_length(self) -> int:
        return self._queue.qsize()

    def enter_inline(self) -> bool:
        """Called by a transport thread: True (holding the callback lock) when it may run a callback now.

        Only while the executor is idle, so inline deliveries never delay timers or queued work
        by more than the one callback in progress. Pair every True with `exit_inline()`.
        """
        # Never nested: a callback whose publish is delivered on its own thread queues that message.
        # Only the lock's holder can be inline, so one attribute tells whether it is this thread.
        me = threading.get_ident()
        if self._inline_thread == me:
            return False
        if not self._idle or not self._callback_lock.acquire(blocking=False):
            return False
        if not self._idle:  # the spinning thread woke up in between: let it run first
            self._callback_lock.release()
            return False
        self._inline_thread = me
        return True

    def exit_inline(self) -> None:
        self._inline_thread = None
        self._callback_lock.release()

    # -- running ----------------------------------------------------------------------------
    def _next_timer(self, now: float) -> tuple[Timer | None, float]:
        best, when = None, float("inf")
        for t in self._timers:
            if not t.is_canceled() and t._next < when:
                best, when = t, t._next
        return best, when

    def _run(self, work: Work) -> None:
        fn, args = work
        with self._callback_lock:
            fn(*args)

    def spin_once(self, timeout_sec: float | None = None) -> bool:
        """Run at most one due timer or one work item; returns whether something ran."""
        now = time.monotonic()
        timer, when = self._next_timer(now)
        if timer is not None and when <= now:
            with self._callback_lock:
                timer._fire(now)
            return True
        wait = when - now if timer is not None else timeout_sec
        if timeout_sec is not None and wait is not None:
            wait = min(wait, timeout_sec)
        try:
            if wait is None or wait > 0:
                self._idle = True
                try:
                    work = self._queue.get(timeout=wait)
                finally:
                    self._idle = False
            else:
                work = self._queue.get_nowait()
        except queue.Empty:
            return False
        if work is None:
            return False
        self._run(work)
        return True

    def spin(self, duration: float | None = None) -> None:
        deadline = None if duration is None else time.monotonic() + duration
        self._stop.clear()
        while not self._stop.is_set():
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.spin_once(min(left, 0.1))
            else:
                self.spin_once(0.1)

    def spin_until_future_complete(self, future, timeout_sec: float | None = None) -> None:
        deadline = None if timeout_sec is None else time.monotonic() + timeout_sec
        while not future.done():
            if deadline is not None and time.monotonic() >= deadline:
                return
            self.spin_once(0.05)

    def shutdown(self, timeout_sec: float | None = None) -> None:
        self._stop.set()
        self._queue.put(None)


class SingleThreadedExecutor(Executor):
    """Runs every callback on the spinning thread, one at a time."""


class MultiThreadedExecutor(Executor):
    """A pool of `num_threads` workers drains the queue; the spinning thread fires timers."""

    def __init__(self, num_threads: int = 2) -> None:
        super().__init__()
        if num_threads < 1:
            raise ValueError(f"num_threads >= 1 must hold, but got {num_threads}")
        self.num_threads = num_threads
        self._work: queue.SimpleQueue[Work | None] = queue.SimpleQueue()
        self._workers: list[threading.Thread] = []

    def post(self, fn: Callable, *args) -> None:
        self._work.put((fn, args))

    def queue_length(self) -> int:
        return self._work.qsize()

    def enter_inline(self) -> bool:
        return False  # the pool's workers deliver everything

    def _run(self, work: Work) -> None:
        fn, args = work  # callbacks may overlap here: no callback lock
        fn(*args)

    def _worker(self) -> None:
        while True:
            work = self._work.get()
            if work is None:
                return
            self._run(work)

    def spin(self, duration: float | None = None) -> None:
        self._workers = [
            threading.Thread(target=self._worker, name=f"tether-exec-{i}", daemon=True)
            for i in range(self.num_threads)
        ]
        for w in self._workers:
            w.start()
        try:
            super().spin(duration)
        finally:
            for _ in self._workers:
                self._work.put(None)
            for w in self._workers:
                w.join(timeout=5)


def spin(node: Node, executor: Executor | None = None, duration: float | None = None) -> None:
    """Spin a node (on its own executor unless one is given) until shut down or `duration` passes."""
    ex = executor or node.executor
    ex.add_node(node)
    ex.spin(duration)


def spin_once(node: Node, timeout_sec: float | None = None) -> bool:
    return node.executor.spin_once(timeout_sec)


class BackgroundSpin:
    """A node spinning on a daemon thread; `stop()` ends it (services with their own main loop use it)."""

    def __init__(self, node: Node, executor: Executor | None = None) -> None:
        self.executor = executor or node.executor
        self.executor.add_node(node)
        self._thread = threading.Thread(
            target=self.executor.spin, name=f"tether-spin-{node.get_name()}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self.executor.shutdown()
        self._thread.join(timeout)

    def __enter__(self) -> BackgroundSpin:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def spin_in_background(node: Node, executor: Executor | None = None) -> BackgroundSpin:
    return BackgroundSpin(node, executor)
