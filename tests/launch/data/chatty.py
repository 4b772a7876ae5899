"""Launcher test process: prints a line every 50 ms until SIGINT, then says so and exits 0."""

import signal
import time

stop = False


def on_sigint(signum, frame):
    global stop
    stop = True


signal.signal(signal.SIGINT, on_sigint)
print("ready", flush=True)
i = 0
while not stop:
    print(f"tick {i}", flush=True)
    i += 1
    time.sleep(0.05)
print("got SIGINT", flush=True)
