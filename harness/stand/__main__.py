"""``python -m harness.stand CONFIG STATUS_FD CONTROLLER_PID``: the stand process."""
import os
import sys

from harness.stand.main import main

rc = main()
sys.stdout.flush()
sys.stderr.flush()
os._exit(rc)     # never the library's atexit cleanup here: the arena's objects are the workers'
