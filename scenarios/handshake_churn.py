"""A new TLS connection for every request: concurrent handshakes in several
workers all the time (ApacheBench -c 100 against WSS in OpenSIPS #1590;
SIPp with a socket per call in #1755)."""
from harness.scenario import Scenario, fails, passes

SCENARIO = Scenario(
    summary="handshake churn: one request per connection, handoff per message",
    params=dict(memory="shared", handoff="per-message", load="churn", churn_every=1,
                workers=4, conns=50, duration=10),
    expect={"openssl": fails(), "wolfssl": passes()},
    refs=["OpenSIPS #1590", "OpenSIPS #1755"],
)
