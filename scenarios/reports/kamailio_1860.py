"""Kamailio #1860 (5.2.2, OpenSSL 1.1): SIGSEGV in CRYPTO_THREAD_lock_free <-
BIO_free <- SSL_free with more than one TCP child: the session freed by
another process than the one that created it."""
from harness.spec.scenario import Scenario, fails, passes

SCENARIO = Scenario(
    summary="Kamailio #1860: SSL_free in another process than SSL_new (children > 1)",
    params=dict(lib="openssl@1.1.1", memory="shared", handoff="per-message", lock="futex", load="churn",
                churn_every=2, workers=4, conns=50, duration=30),
    expect={"openssl@1.1.1": fails(), "openssl@1.1.1+pshared,prefork-thread": passes()},
    refs=["Kamailio #1860"],
)
