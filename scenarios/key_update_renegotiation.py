"""TLS 1.3 key updates (or, with --tls 1.2, renegotiations) in the middle of
the traffic, every 10 requests of a connection, with per-message handoff:
the rekey started in one worker is finished by whichever worker reads next."""
from harness.spec.scenario import Scenario, fails, passes

SCENARIO = Scenario(
    summary="TLS 1.3 key update every 10 requests (--tls 1.2: renegotiation), per-message handoff",
    params=dict(memory="shared", handoff="per-message", rekey_every=10, workers=4, conns=50,
                duration=10),
    expect={"openssl": fails(), "openssl+pshared,prefork-thread": passes()},
)
