"""The verdicts: one vocabulary for every command (run, repro, compare,
target, watch), with what each means, its exit code and its coarse outcome.

Everything that names a verdict imports it from here."""
from __future__ import annotations

from enum import StrEnum


class V(StrEnum):
    """The verdicts.  Members are strings ("pass", "degraded", ...), so they
    compare equal to the values in outcome.json and serialise as themselves."""
    PASS = "pass"
    DEGRADED = "degraded"
    DEADLOCK = "deadlock"
    LIVELOCK = "livelock"
    MIXED = "mixed"
    CRASH = "crash"
    CORRUPTION = "corruption"
    LEAK = "leak"
    OVERLOAD = "overload"
    STOPPED = "stopped"
    INCONCLUSIVE = "inconclusive"
    UNSUPPORTED = "unsupported"
    INTERRUPTED = "interrupted"
    ERROR = "error"

    @property
    def meaning(self) -> str:
        return VERDICTS[self][0]

    @property
    def exit(self) -> int:
        return VERDICTS[self][1]

    @property
    def outcome(self) -> str:
        return VERDICTS[self][2]

    @property
    def failure(self) -> bool:
        return self in FAILURES


# verdict -> (meaning, exit code, coarse outcome)
VERDICTS = {
    V.PASS: ("load served, every worker live", 0, "clean"),
    V.DEGRADED: ("some workers stuck for good while the others carry the load", 1, "stalled"),
    V.DEADLOCK: ("no progress, stuck processes blocked (no CPU)", 1, "stalled"),
    V.LIVELOCK: ("no progress while stuck processes burn CPU", 1, "stalled"),
    V.MIXED: ("some blocked, others spinning on a lock the blocked ones hold", 1, "stalled"),
    V.CRASH: ("a process died by a signal (which, during what)", 1, "crashed"),
    V.CORRUPTION: ("damage caught: double or wild free, bad reply bytes, overwritten status, "
                   "identical random bytes in two workers", 1, "corrupt"),
    V.LEAK: ("shared memory grew steadily per closed connection", 1, "leaking"),
    V.OVERLOAD: ("no progress because of CPU starvation: not a hang", 3, "inconclusive"),
    V.STOPPED: ("a process is stopped (state T): not a hang", 3, "inconclusive"),
    V.INCONCLUSIVE: ("the tool cannot judge (the reason says why)", 3, "inconclusive"),
    V.UNSUPPORTED: ("the library cannot do what the run asks (the reason says why)", 3,
                    "unsupported"),
    V.INTERRUPTED: ("the controller was interrupted", 130, "interrupted"),
    V.ERROR: ("the run itself could not be done (the reason says why)", 4, "error"),
}

HANGS = frozenset({V.DEGRADED, V.DEADLOCK, V.LIVELOCK, V.MIXED})
FAILURES = HANGS | {V.CRASH, V.CORRUPTION, V.LEAK}      # a failure was found
NOT_HANGS = frozenset({V.OVERLOAD, V.STOPPED})          # no progress, but not the library's
NOT_JUDGED = frozenset({V.INCONCLUSIVE, V.UNSUPPORTED, V.INTERRUPTED, V.ERROR})

EXIT_PASS, EXIT_FAILURE, EXIT_USAGE, EXIT_CANNOT_TELL, EXIT_HARNESS = 0, 1, 2, 3, 4
EXIT_BISECT_SKIP, EXIT_INTERRUPTED = 125, 130


def exit_code(verdict: str) -> int:
    """0 pass, 1 failure found, 3 cannot tell, 4 harness error, 130 interrupted."""
    return VERDICTS.get(verdict, ("", EXIT_FAILURE, ""))[1]


def outcome(verdict: str) -> str:
    """The coarse outcome in outcome.json: clean, stalled, crashed, corrupt, ..."""
    return VERDICTS.get(verdict, ("", 0, "inconclusive"))[2]


def bisect_code(code: int) -> int:
    """git bisect run: 0 good, 1 bad, 125 skip (anything that cannot be judged)."""
    return code if code in (EXIT_PASS, EXIT_FAILURE) else EXIT_BISECT_SKIP
