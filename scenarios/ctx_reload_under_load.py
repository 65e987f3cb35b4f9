"""The server context replaced every 20 ms under handshake churn, as
Kamailio's tls.reload does: new sessions take the new SSL_CTX, old ones keep
a reference to theirs; each old context is freed by the reloading process."""
from harness.spec.scenario import Scenario, fails, passes

SCENARIO = Scenario(
    summary="certificate/context reload every 20 ms under handshake churn",
    params=dict(memory="shared", handoff="per-message", reload_ms=20, load="churn",
                churn_every=5, workers=4, conns=50, duration=10),
    expect={"openssl": fails(), "openssl+pshared,prefork-thread": passes()},
    refs=["Kamailio #3305", "Kamailio #3319"],
)
