"""Shared SSL_CTX vs one per worker, with an RSA key (RSA blinding keyed by
pthread_self(), identical in every forked worker)."""
from harness.spec.scenario import Scenario

SCENARIO = Scenario(
    summary="RSA certificate, per-worker SSL_CTX (compare with --ctx shared)",
    params=dict(memory="shared", handoff="per-message", cert="rsa", mitigate="per-worker-ctx",
                load="churn", churn_every=1, workers=4, conns=50, duration=10),
    refs=["OpenSIPS #1799"],
    notes="No expectation yet: the handshake failure rate is what to compare.",
)
