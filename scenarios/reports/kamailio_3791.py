"""Kamailio #3791 / #4055 / #3885 (5.6-5.8, OpenSSL 3.0): SIGABRT "freeing already
freed pointer" under concurrent handshakes.  Kamailio shares the library's
locks (TLS_PTHREAD_MUTEX_SHARED); fixed by tls_threads_mode (per-thread state
not inherited), not in 5.6.3."""
from harness.spec.scenario import Scenario, fails, passes

SCENARIO = Scenario(
    summary="Kamailio #3791: concurrent handshakes, OpenSSL 3.0, locks shared, no threads mode",
    family="shared thread-local state",
    params=dict(lib="openssl", memory="shared", handoff="per-message", mitigate="pshared", load="churn",
                churn_every=1, workers=4, conns=50, duration=30),
    expect={"openssl+pshared": fails(), "openssl+pshared,prefork-thread": passes()},
    refs=["Kamailio #3791", "Kamailio #4055", "Kamailio #3885"],
)
