"""A worker stopped (SIGSTOP, as a debugger would) while holding a lock: the
watchdog must say 'stopped', never call it a hang."""
from harness.spec.scenario import Scenario, fails
from harness.verdicts import V

SCENARIO = Scenario(
    summary="a worker stopped while holding a connection lock (never a hang)",
    params=dict(memory="private", handoff="pinned", fault="stop:2:500", duration=5),
    expect={lib: fails(verdicts=[V.STOPPED]) for lib in ("openssl", "wolfssl", "gnutls")},
)
