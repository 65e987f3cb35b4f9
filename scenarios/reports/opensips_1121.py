"""OpenSIPS #1121 / #1304 (2.4, OpenSSL 1.1.0): crash at exit, every process
running OPENSSL_cleanup on the same shared objects."""
from harness.spec.scenario import Scenario, fails, passes

SCENARIO = Scenario(
    summary="OpenSIPS #1121: crash at shutdown, OPENSSL_cleanup in every process",
    family="exit double free",
    params=dict(lib="openssl@1.1.1", memory="shared", handoff="per-message", mitigate="pshared,prefork-thread",
                shutdown="exit", workers=4, conns=50, duration=3),
    expect={"openssl@1.1.1+pshared,prefork-thread": fails(families=["exit double free"]),
            "openssl@1.1.1+no-atexit,pshared,prefork-thread": passes()},
    refs=["OpenSIPS #1121", "OpenSIPS #1304"],
)
