"""OpenSIPS #1755 (2.4.6, OpenSSL 1.1): 100% CPU, never recovers. SIPp over
TLS with a socket per call at 75 calls/s hung within seconds at 500-750
concurrent calls."""
from harness.scenario import Scenario, fails

SCENARIO = Scenario(
    summary="OpenSIPS #1755: socket per call, 75 calls/s, OpenSSL 1.1 in shared memory",
    params=dict(lib="openssl@1.1.1", memory="shared", handoff="per-message", lock="spin",
                load="churn", churn_every=1, rate=75, conns=64, workers=8, duration=20),
    expect={"openssl@1.1.1": fails(), "openssl": fails()},
    refs=["OpenSIPS #1755"],
)
