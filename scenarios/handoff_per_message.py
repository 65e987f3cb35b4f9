"""Every request may be served by another worker: the OpenSIPS model.

Connections go back to the listener after each batch of requests and are
handed to the least busy worker; each new owner calls SSL_set_fd with its
own fd number.
"""
from harness.spec.scenario import Scenario, fails, passes

SCENARIO = Scenario(
    summary="per-message handoff, TLS objects in the shared arena (OpenSIPS model)",
    family="lost wake-up",
    params=dict(memory="shared", handoff="per-message", lock="spin", workers=4, conns=50,
                duration=10),
    expect={
        "openssl": fails(families=["lost wake-up"]),
        "openssl@1.1.1": fails(),
        "openssl+prefork-thread,pshared": passes(),
        "wolfssl": passes(),
    },
    refs=["OpenSIPS #1755", "Kamailio #1172"],
)
