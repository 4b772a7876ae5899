"""Launcher test process: ignores SIGINT and SIGTERM, as a hung Zenoh process can; only SIGKILL ends it."""

import signal
import time

signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready", flush=True)
while True:
    time.sleep(0.1)
