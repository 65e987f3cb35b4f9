"""OpenSIPS 4.0.1, TLS I/O in the TCP main process's threads (tcp_threads):
now and then a second `200 OK` for a request already answered arrives on the
same TLS connection, after the client has read the first one (found by
tlsharness; not in OpenSIPS's tracker as of 2026-12-03).  Over plain TCP on
the same server (`transport="tcp"` with `tcp_port`) and on 3.6.8 over TLS,
the same load gives none: the duplicate belongs to 4.0's threaded TLS path."""
from harness.spec.scenario import Scenario, fails
from harness.verdicts import V

SCENARIO = Scenario(
    summary="OpenSIPS 4.0.1: duplicate 200 replies over TLS from the threaded TLS I/O",
    target="opensips",
    params=dict(opensips_version="4.0", tls_lib="openssl", workers=4, load="persistent",
                window=1, conns=50, clients=2, tls="1.3", duration=10),
    expect={"openssl": fails(verdicts=[V.CORRUPTION])},
    refs=["OpenSIPS 4.0 tcp_threads (commit 5e62d3837a)"],
    notes="measured 2026-12-03 (bench/opensips_matrix.py, 10 runs a row, round-robin): 4.0.1 over TLS 7/10 corruption, 18 duplicate replies in all, nothing else; the same load over plain TCP to the same server 0/10; 3.6.8 over TLS 0/10. Also 4.0.1 tls_wolfssl persistent 4/5. TLS vs TCP: add transport='tcp', tcp_port=PORT; 3.6.8: opensips_version='3.6'",
)
