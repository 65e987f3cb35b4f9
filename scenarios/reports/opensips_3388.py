"""OpenSIPS #3388 (3.x, OpenSSL 3): crash in ERR_pop_to_mark / double free in
err_local.h when OpenSSL was used before fork by another module (libcurl,
redis TLS).  Fixed by pthread_atfork(OPENSSL_thread_stop), PR #3841."""
from harness.spec.scenario import Scenario, fails, passes
from harness.verdicts import V

SCENARIO = Scenario(
    summary="OpenSIPS #3388: OpenSSL used by another module before fork",
    family="shared thread-local state",
    params=dict(lib="openssl", memory="shared", handoff="per-message", mitigate="pshared,prefork-thread",
                parent_use=True, reject_every=2, load="churn", churn_every=1, workers=4, conns=50,
                duration=30),
    expect={"openssl+pshared,prefork-thread": fails(verdicts=[V.CRASH, V.CORRUPTION]),
            "openssl+atfork-stop,pshared,prefork-thread": passes()},
    refs=["OpenSIPS #3388", "OpenSIPS PR #3841"],
)
