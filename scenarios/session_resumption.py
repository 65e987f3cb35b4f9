"""Churn with session resumption: the server's session cache and ticket keys
live in the shared SSL_CTX, used by every worker."""
from harness.spec.scenario import Scenario, fails

SCENARIO = Scenario(
    summary="churn with session resumption (shared session cache / tickets)",
    params=dict(memory="shared", handoff="per-message", load="churn", churn_every=5,
                resume=True, workers=4, conns=50, duration=10),
    expect={"openssl": fails()},
)
