"""What the watchdog decides: thresholds, the verdict record, and helpers
shared by the rules for the stand and for foreign servers."""
from __future__ import annotations

import signal
from dataclasses import asdict, dataclass, field

from harness.verdicts import FAILURES

@dataclass
class Thresholds:
    stall_s: float = 0.4          # one busy activity this long: the worker is stuck
    sleep_samples: int = 2        # asleep (state S/D) this many samples inside a non-blocking
                                  # activity (handshake, read, attach, close): stuck
    progress_s: float = 0.5       # window over which progress (replies) is looked for
    no_progress_s: float = 2.0    # no reply at all this long, nobody stuck: a hang anyway
    spin_cpu: float = 0.5         # CPU share above which a stuck process is spinning
    spin_cpu_s: float = 0.03      # a worker that used this much CPU in one TLS operation
                                  # (a handshake takes well under 1 ms; mbed TLS 2.28 about 6)
                                  # spins: stuck without waiting for stall_s, and a starved
                                  # worker never gets there.  Not in a worker's first
                                  # handshake: wolfSSL 4.6 spends ~30 ms there on set-up
    futex_samples: int = 2        # private futex wait on an arena address, this many samples
    overload_wait: float = 0.5    # run-queue wait per wall second that makes it overload
    holder_wait_s: float = 0.1    # waiting this long for a lock held by a stuck worker: stuck
    shared_wait_s: float = 2.0    # a wait on a PROCESS_SHARED futex is normal contention (it will
                                  # be woken): stuck only after this long in the same activity
    leak_min_bytes: int = 1 << 20  # arena growth over the second half of the load that can be a leak
    leak_per_conn: int = 1024     # ... and per connection closed meanwhile (bytes; a warming
                                  # cache of a clean OpenSSL run: ~350 in 8 s runs)
    leak_steady: float = 0.75     # ... its floor (lowest use of each second) rising in this share of seconds
    leak_min_s: float = 4.0       # load shorter than this: no leak judgement
    pressure: float = 0.5         # machine CPU pressure (PSI "some") above which ...
    pressure_stall_s: float = 1.6  # ... a worker that is not spinning needs this long in one
                                  # activity to be stuck (a busy machine slows a healthy one)
    starved_cpu_s: float = 0.05   # a stuck process that ran less than this since its activity
                                  # began, while waiting for a CPU, is starved, not stuck


@dataclass
class Verdict:
    verdict: str
    reason: str = ""
    onset_ns: int | None = None
    detect_ns: int | None = None
    blocked: list = field(default_factory=list)
    spinning: list = field(default_factory=list)
    stopped: list = field(default_factory=list)
    crashed: list = field(default_factory=list)
    progressing: list = field(default_factory=list)
    evidence: list = field(default_factory=list)
    families: list = field(default_factory=list)
    stacks: list = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.verdict in FAILURES

    def to_dict(self) -> dict:
        return asdict(self)


def outstanding(lg: dict) -> int:
    """Requests sent and not yet settled (answered, bad or timed out; or abandoned
    with a connection the load generator reset, --abort-every); with no 'sent'
    counter (a foreign progress source), assume load is offered."""
    if "sent" not in lg:
        return 1
    return lg["sent"] - lg.get("answered", 0) - lg.get("bad", 0) - lg.get("timed_out", 0) \
        - lg.get("abandoned", 0)


def in_arena(addr: int, arena: tuple[int, int]) -> bool:
    base, size = arena
    return base != 0 and base <= addr < base + size


def crash_reason(crashed) -> str:
    parts = []
    for c in crashed:
        if c["exit_code"] == -1:          # a process we did not start: only that it vanished
            parts.append(f"{c['role']} (pid {c['pid']}) vanished")
            continue
        sig = signal.Signals(c["signal"]).name if c["signal"] else f"exit {c['exit_code']}"
        parts.append(f"{c['role']} {c['slot']} (pid {c['pid']}) died of {sig} during {c['activity']}")
    return "; ".join(parts)


def round3(x):
    return None if x is None else round(x, 3)
