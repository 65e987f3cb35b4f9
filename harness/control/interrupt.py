"""SIGTERM, SIGINT and SIGHUP of the controller during `target` and `watch`:
raised as Interrupted where the run can still close its folder (exit 128 +
the signal: 130 for SIGINT, 143 for SIGTERM)."""
from __future__ import annotations

import signal
from contextlib import contextmanager

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class Interrupted(BaseException):
    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def _raise(signum, frame):
    for s in SIGNALS:              # the clean-up that follows must not be cut short
        signal.signal(s, signal.SIG_IGN)
    raise Interrupted(signum)


@contextmanager
def trapped():
    """Inside: the first of those signals raises Interrupted (KeyboardInterrupt
    too is one) and later ones are ignored until the block is left."""
    old = {s: signal.signal(s, _raise) for s in SIGNALS}
    try:
        yield
    except KeyboardInterrupt:
        raise Interrupted(signal.SIGINT) from None
    finally:
        for s, h in old.items():
            signal.signal(s, h)

