"""Kamailio #2395 (5.2.7): a deadlock after many TLS calls when the client is
killed abruptly, over and over.  Here: churn of 20 requests per connection,
and every second connection reset (RST, no close_notify) right after its
first requests are written, before their replies are read (--abort-every:
the load generator's own doing, counted in aborted_conns and
abandoned_requests, never as bad replies or connection errors)."""
from harness.spec.scenario import Scenario

SCENARIO = Scenario(
    summary="Kamailio #2395: TLS connections reset by the client with requests in flight, repeated",
    target="kamailio",
    params=dict(workers=1, conns=50, window=2, load="churn", churn_every=20, abort_every=2,
                duration=20),
    refs=["Kamailio #2395"],
    notes="Measured 2026-12-03 on Debian's Kamailio 5.6.3 (OpenSSL 3.0), these params, the "
          "switch injected into target's load generators by a script (the target flag was not "
          "wired yet), load average 9 to 10 on 2 shared cores: pass 3/3 (3.7k to 4.3k "
          "replies/s; 3,724 to 4,301 connections reset each run, 2 requests abandoned with "
          "each; 0 bad replies, 0 connection errors; the server logged only tcp_read_req read "
          "errors), against 6.4k replies/s without the switch (pass). No deadlock: #2395 does "
          "not reproduce on 5.6.3 with one TCP worker. With 8 workers 5.6.3 crashes (double "
          "free in shared memory, tls_init.c ser_free) with and without the switch alike: that "
          "is Kamailio #3791, not this report, so the scenario keeps one worker to tell them "
          "apart. Kamailio 6.0.1 (Debian trixie, tls_threads_mode 2), 4 workers, the same "
          "switch: pass 1/1 (4.1k replies/s, 4,163 resets).",
)
