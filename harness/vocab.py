"""The other names that cross processes, beside the verdicts (harness.verdicts):
how the processes the controller starts end (their exit status), and the
mitigation names (what --mitigate takes, what a stand is told, what a run
folder records).  Everything that writes one imports it from here; what each
mitigation does is said in harness.spec.params.MITIGATIONS."""
from __future__ import annotations

from enum import IntEnum, StrEnum


class ProcExit(IntEnum):
    """Exit status of the stand, its workers and a load generator.  The C side
    (native_shim/src/exits.h) uses the same numbers."""
    OK = 0
    FAILED = 1             # a load generator's loop failed (the reason on its stderr)
    ORPHANED = 70          # the parent was already gone when the death signal was set
    NO_RESOURCES = 71      # the I/O process could not allocate its tables or start its threads
    SETUP = 78             # EX_CONFIG: the stand could not be set up (reason in status.error)
    UNSUPPORTED = 79       # the library cannot do what the run asks (reason in status.error)


class M(StrEnum):
    """The mitigations.  Members are strings ("pshared", ...), so they compare
    equal to what --mitigate and run.json hold and serialise as themselves."""
    PSHARED = "pshared"
    PREFORK_THREAD = "prefork-thread"
    GLOBAL_LOCK = "global-lock"
    PER_WORKER_CTX = "per-worker-ctx"
    ATFORK_STOP = "atfork-stop"
    NO_ATEXIT = "no-atexit"
    LOCKED_RAND = "locked-rand"
    SINGLE_PROCESS = "single-process"
    WRITE_DUP = "write-dup"
    WARM_METHODS = "warm-methods"
