"""concurrent-read-write with TLS 1.3 key updates every 50 requests: the
reader must answer a KeyUpdate by writing, so with split locks a reader and a
writer write into one session at once.  This is what wolfSSL_write_dup is
for: the read side hands the key change to the write side."""
from harness.spec.scenario import Scenario, fails, passes
from harness.verdicts import V

SCENARIO = Scenario(
    summary="split read/write locks + TLS 1.3 key updates: the reader writes too",
    family="double free in shared memory",
    params=dict(memory="shared", handoff="per-message", reply_by="other", conn_locks="split",
                workers=8, conns=4, window=64, rekey_every=50, duration=10),
    # measured (docs/measured.md): double frees in the arena within the first
    # second without write_dup; 5.9 with it clean; 5.7's write_dup fails every
    # key update (each connection ends in a TLS error: inconclusive, no hang)
    expect={"wolfssl@5.7": fails(verdicts=[V.CORRUPTION]),
            "wolfssl@5.9": fails(),
            "wolfssl@5.9+write-dup": passes()},
    refs=["OpenSIPS tls_wolfssl"],
)
