"""The library used by the main process before fork, as other modules of a
server do (libcurl, a TLS redis client): the main thread's error state is
created in the arena and every worker inherits it as its own.  Even with the
locks shared and the TLS contexts built in a throwaway thread, failing
handshakes (which put errors on that queue) then race on one object.  Fix:
pthread_atfork(prepare = OPENSSL_thread_stop), OpenSIPS PR #3841."""
from harness.spec.scenario import Scenario, fails, passes
from harness.verdicts import V

SCENARIO = Scenario(
    summary="library used in the parent before fork: inherited per-thread error state",
    family="shared thread-local state",
    params=dict(memory="shared", handoff="per-message", mitigate="pshared,prefork-thread",
                parent_use=True, reject_every=3, load="churn", churn_every=1, workers=4,
                conns=50, duration=15),
    expect={"openssl+pshared,prefork-thread": fails(verdicts=[V.CRASH, V.CORRUPTION]),
            "openssl+atfork-stop,pshared,prefork-thread": passes()},
    refs=["OpenSIPS #3388", "OpenSIPS PR #3841", "Kamailio #3695"],
)
