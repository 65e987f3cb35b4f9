"""OpenSIPS #3272 (3.x, OpenSSL, TLS domains in a database): a crash after
about an hour of `tls_reload` every 5 s, "freeing already freed shm pointer
... first free: crypto/err/err.c".  Here the reload runs every 0.2 s under
TLS handshake churn, so an hour's 720 reloads take under three minutes."""
from harness.spec.scenario import Scenario

SCENARIO = Scenario(
    summary="OpenSIPS #3272: MI tls_reload in a loop under TLS load (domains from db_text)",
    target="opensips",
    family="shared thread-local state",
    params=dict(opensips_version="3.6", tls_lib="openssl", reload_every=0.2, workers=4,
                load="churn", conns=50, clients=2, tls="1.3", duration=30),
    refs=["OpenSIPS #3272", "OpenSIPS #2362"],
    notes='not reproduced on 3.6.8 (2026-12-03): 0/5 runs of 30 s, 436 reloads acknowledged in all (77-96 a run; the reload waits for its MI answer, so fewer than 150 a run), no crash and no double free in the log',
)
