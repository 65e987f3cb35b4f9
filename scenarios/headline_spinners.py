"""The mission's headline on demand: "high CPU, no SIP processing".  Replies
are written by another worker than the reader (its own fd attached, the
connection's spinlock held), many requests in flight per connection, TLS 1.2
with a CBC cipher so that every record's IV comes from the DRBG: writers
block for good inside SSL_write on the DRBG's lock (a lost wake-up in the
arena) while holding connection locks, and the next worker that needs one of
those connections spins on it (test-and-set + sched_yield) at full CPU.
Connections arrive over one second, so that the cold first handshakes do not
all collide (they deadlock otherwise, which is another story)."""
from harness.spec.scenario import Scenario, fails, passes
from harness.verdicts import V

SCENARIO = Scenario(
    summary="high CPU, no SIP processing: replies written by other workers, blocked writers, spinners",
    family="application spinlock on a blocked holder",
    params=dict(memory="shared", handoff="per-message", lock="spin", reply_by="other", tls="1.2",
                ciphers="ECDHE-ECDSA-AES128-SHA256", window=8, workers=4, conns=12, ramp=1,
                duration=15, linger=3),
    expect={"openssl": fails(verdicts=[V.MIXED, V.LIVELOCK],
                             families=["application spinlock on a blocked holder"]),
            "openssl+pshared,prefork-thread": passes()},
    refs=["OpenSIPS #1755", "OpenSIPS #1767"],
)
