"""OpenSIPS #2362 (3.1, OpenSSL 1.1.1): SIGABRT "freed already ... crypto/err/err.c"
when accepts fail concurrently (clients answering unknown ca)."""
from harness.spec.scenario import Scenario, fails
from harness.verdicts import V

SCENARIO = Scenario(
    summary="OpenSIPS #2362: concurrently failing accepts (unknown ca), OpenSSL 1.1.1",
    family="shared thread-local state",
    params=dict(lib="openssl@1.1.1", memory="shared", handoff="per-message", mitigate="pshared", reject_every=2,
                load="churn", churn_every=1, workers=4, conns=50, duration=30),
    expect={"openssl@1.1.1+pshared": fails(verdicts=[V.CRASH, V.CORRUPTION])},
    refs=["OpenSIPS #2362"],
)
