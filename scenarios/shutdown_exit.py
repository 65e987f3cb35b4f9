"""Shutdown: every worker leaves through exit(), so OpenSSL's atexit cleanup
runs in each of them on the same objects in the arena.  Fix: no atexit
cleanup (OPENSSL_INIT_NO_ATEXIT, OpenSIPS #1304)."""
from harness.spec.scenario import Scenario, fails, passes

SCENARIO = Scenario(
    summary="graceful shutdown: every worker runs the library's atexit cleanup",
    family="exit double free",
    params=dict(memory="shared", handoff="per-message", mitigate="pshared,prefork-thread",
                shutdown="exit", workers=4, conns=50, duration=3),
    # measured: workers crash, free twice, or hang inside exit() / while the others exit
    expect={"openssl+pshared,prefork-thread": fails(families=["exit double free"]),
            "openssl+no-atexit,pshared,prefork-thread": passes()},
    refs=["OpenSIPS #1121", "OpenSIPS #1304"],
)
