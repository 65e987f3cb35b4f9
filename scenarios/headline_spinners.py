"""The mission's headline on demand: "high CPU, no SIP processing".  Three
workers behind OpenSIPS 3.2's global TLS lock (a spinlock), TLS 1.2 with a
CBC cipher so that every record draws from the DRBG: the first worker to
block inside OpenSSL (a lost wake-up on a lock in the arena) holds the global
lock, and the two others spin for it at full CPU on a 2-core machine."""
from harness.scenario import Scenario, fails, passes

SCENARIO = Scenario(
    summary="high CPU, no SIP processing: spinners on a global lock whose holder is blocked",
    family="application spinlock on a blocked holder",
    params=dict(memory="shared", handoff="per-message", lock="spin", mitigate="global-lock",
                tls="1.2", ciphers="ECDHE-ECDSA-AES128-SHA256", window=4, workers=3, conns=30,
                duration=20, linger=1.5),
    expect={"openssl+global-lock": fails(verdicts=["mixed", "livelock"],
                                         families=["application spinlock on a blocked holder"]),
            "openssl+global-lock,pshared,prefork-thread": passes()},
    refs=["OpenSIPS #1755", "OpenSIPS #1767", "OpenSIPS #2362"],
)
