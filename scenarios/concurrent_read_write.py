"""A reader and a writer in one TLS session at once: split connection locks
(a read lock and a write lock, as OpenSIPS's tls_wolfssl takes them), replies
written by another worker than the reader, few connections with many
requests in flight so that writes begin while a reader holds the session
(counted: rw_overlaps).  With --mitigate write-dup the writers use the
session's write duplicate (wolfSSL_write_dup) instead."""
from harness.spec.scenario import Scenario, passes

SCENARIO = Scenario(
    summary="split read/write locks: a writer beside a reader in one session (OpenSIPS tls_wolfssl)",
    params=dict(memory="shared", handoff="per-message", reply_by="other", conn_locks="split",
                workers=8, conns=4, window=64, duration=10),
    # measured (docs/measured.md): about 2,000 writes beside a reader per 5 s,
    # no TLS error, with or without write_dup, 5.7 and 5.9
    expect={"wolfssl@5.7": passes(), "wolfssl@5.7+write-dup": passes(),
            "wolfssl@5.9": passes(), "wolfssl@5.9+write-dup": passes()},
    refs=["OpenSIPS tls_wolfssl"],
)
