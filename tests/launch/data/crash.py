"""Launcher test process: exits with the code in argv[1], or kills itself with the named signal."""

import os
import signal
import sys

how = sys.argv[1]
print(f"ending with {how}", flush=True)
if how.startswith("SIG"):
    os.kill(os.getpid(), getattr(signal, how))
sys.exit(int(how))
