"""Handshakes that fail concurrently in several workers: every third client
does not trust the server's CA and aborts with alert unknown_ca, so failing
accepts push errors onto the (shared) error state of the workers."""
from harness.spec.scenario import Scenario, fails, passes
from harness.verdicts import V

SCENARIO = Scenario(
    summary="concurrently failing handshakes (clients reject the CA: unknown ca)",
    family="shared thread-local state",
    params=dict(memory="shared", handoff="per-message", mitigate="pshared", reject_every=3,
                load="churn", churn_every=1, workers=4, conns=50, duration=15),
    expect={"openssl+pshared": fails(verdicts=[V.CRASH, V.CORRUPTION]),
            "openssl+pshared,prefork-thread": passes()},
    refs=["OpenSIPS #2362"],
)
