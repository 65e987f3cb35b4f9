"""Live progress of a run: a rewritten line on a terminal, plain lines
(one a second) otherwise, nothing when quiet."""
from __future__ import annotations

import sys
import time

from harness import segments

# the letters people know from the progress line; an activity added in C
# later gets a letter of its own name (abbreviations())
PREFERRED = {"starting": "S", "idle": ".", "accept": "a", "handshake": "H", "read": "r",
             "write": "w", "lock_wait": "L", "close": "c", "fault": "F", "exited": "x",
             "attach": "A", "random": "R"}
_abbrev: dict[str, str] | None = None


def abbreviations() -> dict[str, str]:
    """One distinct character per activity of the core extension: the
    preferred letter, else the first letter of its name not yet taken
    (lower case, then upper case), else its number."""
    global _abbrev
    if _abbrev is None:
        names = segments.activities()
        out = {n: PREFERRED[n] for n in names if n in PREFERRED}
        for i, n in enumerate(names):
            if n in out:
                continue
            taken = set(out.values()) | {"X", "?"}
            free = [c for c in [*n.lower(), *n.upper()] if c.isalpha() and c not in taken]
            out[n] = free[0] if free else str(i % 10)
        _abbrev = out
    return _abbrev


class Progress:
    def __init__(self, quiet: bool = False, stream=None):
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.last_answered = 0
        self.last_print = 0.0
        self.rate = 0.0
        self.dirty = False

    def update(self, s: dict, elapsed: float, duration: float) -> None:
        if self.quiet:
            return
        now = time.monotonic()
        every = 0.25 if self.tty else 1.0
        if now - self.last_print < every:
            return
        ans = s["lg"]["answered"]
        if self.last_print:
            self.rate = (ans - self.last_answered) / (now - self.last_print)
        self.last_answered, self.last_print = ans, now
        abbrev = abbreviations()
        acts = "".join(abbrev.get(w["activity"], "?") if w["state"] == "alive" else "X"
                       for w in s["slots"][1:])
        line = (f"[{elapsed:5.1f}/{duration:.0f}s] {self.rate:9,.0f} replies/s  "
                f"total {ans:,}  bad {s['lg']['bad']}  workers [{acts}]")
        if self.tty:
            self.stream.write("\r" + line[:150].ljust(100))
            self.dirty = True
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def event(self, text: str) -> None:
        if self.quiet:
            return
        self.done()
        self.stream.write(f"  ! {text}\n")
        self.stream.flush()

    def done(self) -> None:
        if self.dirty:
            self.stream.write("\n")
            self.dirty = False
