"""Kamailio #3222 (5.6, OpenSSL 3.0): shared memory corruption above 200-250 new
TLS connections/s with up to 500 persistent ones (1.1.1 copes with 500/s)."""
from harness.spec.scenario import Scenario, fails, passes

SCENARIO = Scenario(
    summary="Kamailio #3222: 250 new TLS connections/s next to persistent ones, OpenSSL 3.0",
    params=dict(lib="openssl", memory="shared", handoff="per-message", mitigate="pshared", load="churn",
                churn_every=1, rate=250, conns=300, clients=2, workers=4, duration=30),
    expect={"openssl+pshared": fails(), "openssl+pshared,prefork-thread": passes()},
    refs=["Kamailio #3222"],
)
