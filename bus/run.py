"""Running a node as its own process: the body of every `tether.nodes` executable's `main()`.

Signals: SIGINT and SIGTERM stop the executor; the node is destroyed and the bus session closed
before exit (a process that exits with a Zenoh session open can hang). An exception in start-up
is reported and the process exits with status 1, so the launcher reports the crash.
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Callable, Sequence

from tether.bus.context import init, shutdown
from tether.bus.node import Node
from tether.settings import settings

__all__ = ["run_node", "setup_logging"]


def setup_logging() -> None:
    logging.basicConfig(
        level=getattr(logging, settings().log_level, logging.INFO),
        format="[%(levelname)s] [%(name)s] %(message)s",
        stream=sys.stderr,
    )


def run_node(
    factory: Callable[..., Node], args: Sequence[str] | None = None, *, duration: float | None = None
) -> int:
    """Create the node with `factory(cli_args=argv)`, spin it until a signal, clean up. Returns the exit status."""
    argv = list(sys.argv[1:] if args is None else args)
    setup_logging()
    init()
    node: Node | None = None
    status = 0
    try:
        node = factory(cli_args=argv)
        executor = node.executor

        def stop(signum, frame) -> None:
            executor.shutdown()

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        executor.spin(duration)
    except KeyboardInterrupt:
        pass
    except Exception:
        logging.getLogger("tether").exception("node failed")
        status = 1
    finally:
        if node is not None:
            close = getattr(node, "close", None)
            if callable(close):
                try:
                    close()
                except Exception:
                    logging.getLogger("tether").exception("node close failed")
            node.destroy_node()
        shutdown()
    return status
