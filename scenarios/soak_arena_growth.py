"""A soak: a new connection every 5 requests for a minute, watching the
arena.  In use it must level off; steady growth per closed connection with
the same number open is a `leak` verdict (OpenSIPS #2604: wolfSSL 4.7.1 leaked
shm at ~15k TLS connections/min, ~500 open).  Lengthen with --duration for a
real soak; --fault leak:1:0 shows what a leak looks like."""
from harness.spec.scenario import Scenario, fails, passes
from harness.verdicts import V

SCENARIO = Scenario(
    summary="soak: arena growth under churn (leak verdict)",
    family="leak",
    params=dict(lib="wolfssl", memory="shared", handoff="per-message", mitigate="pshared",
                load="churn", churn_every=5, workers=4, conns=100, duration=60),
    # measured (60 s): wolfSSL 5.5.4 and OpenSSL 3.0 level off; wolfSSL 4.6.0 does not last:
    # SIGSEGV in mp_mul <- wc_ecc_check_key <- wc_EccPrivateKeyDecode <- wolfSSL_accept_TLSv13
    # within ~400 handshakes, with the locks shared (pshared)
    expect={"wolfssl+pshared": passes(), "openssl+pshared,prefork-thread": passes(),
            "wolfssl@4.6+pshared": fails(verdicts=[V.CRASH])},
    refs=["OpenSIPS #2604", "Kamailio #4567"],
)
