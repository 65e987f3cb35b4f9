"""OpenSIPS #1755 (2.4.6, OpenSSL 1.1): 100% CPU, never recovers.  SIPp over
TLS with a socket per call at 75 calls/s hung within seconds at 500-750
concurrent calls.  Here: 500 client sockets, three requests per socket
(INVITE, ACK, BYE) at 225 requests/s = 75 calls/s, OpenSSL 1.1.1w."""
from harness.spec.scenario import Scenario, fails, passes

SCENARIO = Scenario(
    summary="OpenSIPS #1755: socket per call, 75 calls/s, 500 concurrent sockets, OpenSSL 1.1",
    params=dict(lib="openssl@1.1.1", memory="shared", handoff="per-message", lock="spin",
                load="churn", churn_every=3, rate=225, conns=500, clients=2, workers=8,
                duration=30),
    expect={"openssl@1.1.1": fails(), "openssl": fails(),
            "openssl@1.1.1+pshared,prefork-thread": passes()},
    refs=["OpenSIPS #1755"],
)
