"""The verdicts: one vocabulary for every command (run, repro, compare,
target, watch), with what each means, its exit code and its coarse outcome.

Everything that names a verdict imports it from here."""
from __future__ import annotations

# verdict -> (meaning, exit code, coarse outcome)
VERDICTS = {
    "pass": ("load served, every worker live", 0, "clean"),
    "degraded": ("some workers stuck for good while the others carry the load", 1, "stalled"),
    "deadlock": ("no progress, stuck processes blocked (no CPU)", 1, "stalled"),
    "livelock": ("no progress while stuck processes burn CPU", 1, "stalled"),
    "mixed": ("some blocked, others spinning on a lock the blocked ones hold", 1, "stalled"),
    "crash": ("a process died by a signal (which, during what)", 1, "crashed"),
    "corruption": ("damage caught: double or wild free, bad reply bytes, overwritten status, "
                   "identical random bytes in two workers", 1, "corrupt"),
    "leak": ("shared memory grew steadily per closed connection", 1, "leaking"),
    "overload": ("no progress because of CPU starvation: not a hang", 3, "inconclusive"),
    "stopped": ("a process is stopped (state T): not a hang", 3, "inconclusive"),
    "inconclusive": ("the tool cannot judge (the reason says why)", 3, "inconclusive"),
    "unsupported": ("the library cannot do what the run asks (the reason says why)", 3,
                    "unsupported"),
    "interrupted": ("the controller was interrupted", 130, "interrupted"),
    "error": ("the run itself could not be done (the reason says why)", 4, "error"),
}

HANGS = frozenset({"degraded", "deadlock", "livelock", "mixed"})
FAILURES = HANGS | {"crash", "corruption", "leak"}       # a failure was found
NOT_HANGS = frozenset({"overload", "stopped"})          # no progress, but not the library's
NOT_JUDGED = frozenset({"inconclusive", "unsupported", "interrupted", "error"})

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
