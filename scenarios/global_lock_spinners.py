"""OpenSIPS 3.2's tls_global_lock around all TLS work: when the holder
blocks in the library, every other worker spins for the global lock."""
from harness.spec.scenario import Scenario, fails
from harness.verdicts import V

SCENARIO = Scenario(
    summary="global TLS lock (spin): a blocked holder, every other worker spinning",
    family="application spinlock on a blocked holder",
    params=dict(memory="shared", handoff="per-message", lock="spin", mitigate="global-lock",
                workers=4, conns=50, duration=10),
    expect={"openssl+global-lock": fails(verdicts=[V.MIXED, V.LIVELOCK, V.DEADLOCK, V.DEGRADED])},
    refs=["OpenSIPS #2362", "OpenSIPS #1767"],
)
