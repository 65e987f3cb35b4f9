"""Random bytes right after fork, in every worker: two workers drawing the
same block share generator state (copied by fork, or shared in the arena).
Checked for every library, private memory included."""
from harness.spec.scenario import Scenario, fails, passes
from harness.verdicts import V

SCENARIO = Scenario(
    summary="random bytes after fork: identical blocks in two workers are corruption",
    family="shared generator state",
    params=dict(check_random=True, memory="private", handoff="per-message", tls="1.2", duration=3),
    expect={
        "openssl": passes(), "openssl@1.1.1": passes(), "gnutls": passes(),
        "openssl+pshared,prefork-thread": passes(),
        # measured: mbed TLS 2.28's CTR_DRBG, seeded in the parent, repeats in every worker
        "mbedtls": fails(verdicts=[V.CORRUPTION], families=["shared generator state"]),
        # measured: wolfSSL's global RNG behind wolfSSL_RAND_bytes (the OpenSSL compatibility
        # API) is set up by wolfSSL_Init in the parent and copied by fork: every worker repeats
        # it in private memory (each session's own RNG is seeded per session, unaffected)
        "wolfssl": fails(verdicts=[V.CORRUPTION], families=["shared generator state"]),
        "wolfssl@4.6": fails(verdicts=[V.CORRUPTION], families=["shared generator state"]),
    },
    refs=["OpenSIPS #1799"],
)
