"""Kamailio #4185 (5.8-6.0, OpenSSL 3.2.3 and 3.4.1; open upstream): every
TLS receiver blocked in pthread_rwlock_* under ossl_drbg_get_seed, reached
from tls_post_process_client_hello in SSL_accept, after seconds of three
parallel REGISTER streams over TLS.  Here: OpenSSL 3.5 (the current LTS),
Kamailio's own fixes in place (locks forced process-shared, one SSL_CTX per
worker, the parent's thread state released before fork as tls_threads_mode=2
does), three clients opening connection after connection.  Without the last
fix the shared error state crashes first (measured with 3.0: double frees
within 0.2 s)."""
from harness.spec.scenario import Scenario

SCENARIO = Scenario(
    summary="Kamailio #4185: three REGISTER streams over new TLS connections, OpenSSL 3.5, "
            "Kamailio's fixes",
    family="DRBG lock",
    params=dict(lib="openssl@3.5", memory="shared", handoff="per-message",
                mitigate="pshared,per-worker-ctx,atfork-stop", load="churn", churn_every=1,
                conns=3, clients=3, workers=8, duration=20),
    refs=["Kamailio #4185"],
    notes="does not reproduce here: 0 of 5 20-s runs each with OpenSSL 3.5.7, 3.0.19 and "
          "1.1.1w (1,600-2,050 new connections/s); docs/measured.md has the variants tried",
)
