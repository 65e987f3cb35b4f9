"""Kamailio #1172 (5.0.2, OpenSSL 1.1.0): stops processing; a reader blocked in
__lll_lock_wait <- pthread_rwlock_unlock <- CRYPTO_THREAD_unlock <- SSL_do_handshake
(a private futex).  Kamailio hands each accepted connection to a TCP reader
process.  OpenSSL 3.0 stands in for 1.1.0."""
from harness.spec.scenario import Scenario, fails, passes

SCENARIO = Scenario(
    summary="Kamailio #1172: TLS accepts handed to reader processes, locks in shm private",
    family="lost wake-up",
    params=dict(lib="openssl", memory="shared", handoff="per-connection", lock="futex", load="churn",
                churn_every=10, workers=4, conns=50, duration=30),
    expect={"openssl": fails(), "openssl+pshared,prefork-thread": passes()},
    refs=["Kamailio #1172"],
)
