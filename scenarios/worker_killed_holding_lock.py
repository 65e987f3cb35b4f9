"""A worker dies (SIGKILL) while it holds a connection lock."""
from harness.spec.scenario import Scenario, fails
from harness.verdicts import V

SCENARIO = Scenario(
    summary="a worker killed while holding a connection lock",
    params=dict(memory="private", handoff="per-message", fault="die:2:500", duration=5),
    expect={lib: fails(verdicts=[V.CRASH]) for lib in ("openssl", "wolfssl", "gnutls")},
)
