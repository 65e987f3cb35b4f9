"""Kamailio #4074 and #4391 (5.8, wolfSSL 5.7): a bad-pointer free in shared
memory every 60-80 minutes under production WebRTC load.  Here: wolfSSL 5.7
in the arena with Kamailio's process-shared locks, many connections opened
and closed next to persistent ones (churn every 20 requests), replies written
by other workers than the readers; the arena records every bad free."""
from harness.spec.scenario import Scenario

SCENARIO = Scenario(
    summary="Kamailio #4074/#4391: wolfSSL 5.7 under churn with replies by other workers",
    family="wild free",
    params=dict(lib="wolfssl@5.7", memory="shared", handoff="per-message", mitigate="pshared",
                reply_by="other", load="churn", churn_every=20, conns=200, clients=2,
                workers=8, duration=60),
    refs=["Kamailio #4074", "Kamailio #4391"],
    notes="does not reproduce here: 0 of 5 60-s runs with wolfSSL 5.7.2 (the report: once in "
          "60-80 minutes of production load): 49,000 handshakes a run, no bad free seen by the arena",
)
