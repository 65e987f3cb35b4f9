"""OpenSIPS #1799 (3.1-dev, OpenSSL 1.1.1): SIGSEGV in EVP_DecryptUpdate <- ctr_df
and most handshakes rejected, with parallel handshakes in several workers;
the server already shared the library's locks (pshared)."""
from harness.spec.scenario import Scenario, fails, passes

SCENARIO = Scenario(
    summary="OpenSIPS #1799: parallel handshakes, OpenSSL 1.1.1, locks shared, one SSL_CTX",
    family="shared thread-local state",
    params=dict(lib="openssl@1.1.1", memory="shared", handoff="per-message", mitigate="pshared", load="churn",
                churn_every=1, workers=4, conns=50, duration=30),
    expect={"openssl@1.1.1+pshared": fails(), "openssl@1.1.1+pshared,prefork-thread": passes()},
    refs=["OpenSIPS #1799"],
)
