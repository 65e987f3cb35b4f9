"""Handshake in one worker, all I/O of the connection in another."""
from harness.spec.scenario import Scenario, fails, passes

SCENARIO = Scenario(
    summary="per-connection handoff: handshake in one worker, I/O in another",
    params=dict(memory="shared", handoff="per-connection", lock="spin", workers=4, conns=50,
                duration=10),
    expect={"openssl": fails(), "wolfssl": passes()},
    refs=["OpenSIPS #1590"],
)
