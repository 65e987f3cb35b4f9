"""Kamailio #2394 (5.1.10, OpenSSL 1.1.1): `rand_pool_add: internal error`,
then SIGSEGV in EVP_DecryptUpdate, under scanner traffic (broken
handshakes).  Here: a new TLS connection per request; every third handshake
reset by the client once the server has answered its ClientHello
(--rst-handshake-every), and every fourth connection writing random bytes
behind a TLS record header instead of a ClientHello (--garbage-hello-every);
both the load generator's own doing, counted in rst_handshakes and
garbage_hellos, never as bad replies or connection errors."""
from harness.spec.scenario import Scenario

SCENARIO = Scenario(
    summary="Kamailio #2394: scanner traffic, handshakes broken off and garbage ClientHellos",
    target="kamailio",
    params=dict(workers=1, conns=50, load="churn", churn_every=1, rst_handshake_every=3,
                garbage_hello_every=4, duration=20),
    refs=["Kamailio #2394"],
    notes="Measured 2026-12-03 on Debian's Kamailio 5.6.3 (OpenSSL 3.0), these params, the "
          "switches injected into target's load generators by a script (the target flags were "
          "not wired yet), load average 9.7 to 10.3 on 2 shared cores: pass 3/3 (293 to 314 "
          "replies/s; 2,935 to 3,144 handshakes reset and 2,950 to 3,159 garbage hellos a run; "
          "0 bad replies, 0 connection errors), against 428 replies/s without them (pass). The "
          "server logged each garbage hello as 'TLS accept:error:0A0000F4:SSL routines::"
          "unexpected message' and the resets as tcp_read_req read errors; no rand_pool_add "
          "error, no crash: #2394 does not reproduce on 5.6.3 with OpenSSL 3.0 (its DRBG is not "
          "1.1.1's rand_pool). With 4 workers: 6.0.1 (tls_threads_mode 2) pass 1/1 (248 "
          "replies/s, 2,482 resets, 2,495 garbage hellos); 5.6.3 crash 1/1 (SIGSEGV after a "
          "double free in shared memory, tls_init.c ser_free), as it crashes under churn "
          "alone (Kamailio #3791), so one worker here.",
)
