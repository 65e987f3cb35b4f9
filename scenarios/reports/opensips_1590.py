"""OpenSIPS #1590 (2.4.4, OpenSSL 1.1.0): hang and segfault under ApacheBench -c 100
against WSS: a hundred concurrent handshakes.  OpenSSL 1.1.1w stands in for
1.1.0 (same lock design)."""
from harness.spec.scenario import Scenario, fails, passes

SCENARIO = Scenario(
    summary="OpenSIPS #1590: 100 concurrent connections, a handshake per request",
    family="lost wake-up",
    params=dict(lib="openssl@1.1.1", memory="shared", handoff="per-message", lock="spin", load="churn",
                churn_every=1, conns=100, workers=8, duration=30),
    expect={"openssl@1.1.1": fails(), "openssl@1.1.1+pshared,prefork-thread": passes()},
    refs=["OpenSIPS #1590"],
)
