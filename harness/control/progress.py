"""Live progress of a run: a rewritten line on a terminal, plain lines
(one a second) otherwise, nothing when quiet."""
from __future__ import annotations

import sys
import time

ABBREV = {"starting": "S", "idle": ".", "accept": "a", "handshake": "H", "read": "r",
          "write": "w", "lock_wait": "L", "close": "c", "fault": "F", "exited": "x", "attach": "A", "random": "R"}


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
        acts = "".join(ABBREV.get(w["activity"], "?") if w["state"] == "alive" else "X"
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
