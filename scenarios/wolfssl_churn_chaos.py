"""wolfSSL under maximum handshake churn in shared memory: wolfSSL_new and
wolfSSL_free take the CTX's mutex, which lives in the arena PROCESS_PRIVATE.
Without help the race takes tens of seconds (measured: 4 of 5 60-s runs,
median 27 s); the contention amplifier makes it immediate, and shows that
the pshared fix holds under the same pressure."""
from harness.spec.scenario import Scenario, fails, passes

SCENARIO = Scenario(
    summary="wolfSSL handshake churn + contention amplifier: lost wake-up in wc_LockMutex",
    family="lost wake-up",
    params=dict(lib="wolfssl", memory="shared", handoff="per-message", load="churn", churn_every=1,
                workers=16, conns=100, clients=2, chaos="0.05:500", duration=15),
    expect={"wolfssl": fails(families=["lost wake-up"]), "wolfssl+pshared": passes()},
)
