"""A load generator process: ``python -m harness.loadgen CONFIG FD INDEX CONTROLLER_PID``.

Private memory, system TLS library as client; the loop is C
(native_shim/src/loadgen.c).  Its counters live in the controller's memfd at
slot INDEX.  The loop ends by itself after the configured duration.
"""
from __future__ import annotations

import json
import mmap
import os
import signal
import sys

from harness.vocab import ProcExit


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    cfg = json.loads(open(argv[0]).read())
    fd, index, controller = int(argv[1]), int(argv[2]), int(argv[3])
    from harness.spec.config import raise_fd_limit
    raise_fd_limit()                        # one descriptor per client connection
    from harness.builds import native
    ffi, lib = native.load(cfg["ext"])       # the client build the controller chose
    if lib.tlsh_set_pdeathsig(signal.SIGKILL, controller) != 0:
        os._exit(ProcExit.ORPHANED)          # the controller is already gone
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stride = ffi.sizeof("struct tlsh_lg_counters")
    mm = mmap.mmap(fd, stride * max(index + 1, cfg["c"].get("nclients", 1)))   # all clients
    counters = ffi.cast("struct tlsh_lg_counters *", ffi.from_buffer(mm)) + index
    c = ffi.new("struct tlsh_lg_config *")
    for name, value in cfg["c"].items():     # field by field, as the controller declared them
        setattr(c, name, value.encode() if isinstance(value, str) else value)
    stop = ffi.new("int *")
    rc = lib.tlsh_loadgen_run(c, counters, stop)
    if rc != 0:
        print(f"loadgen: {ffi.string(counters.error).decode(errors='replace')}",
              file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(ProcExit.OK if rc == 0 else ProcExit.FAILED)
