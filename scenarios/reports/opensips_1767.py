"""OpenSIPS #1767 (3.0-era, OpenSSL 1.1): hang, workers in sched_yield under
get_lock on a connection write_lock, with TLS presence traffic (many
requests in flight per connection, TLS 1.2)."""
from harness.scenario import Scenario, fails, passes

SCENARIO = Scenario(
    summary="OpenSIPS #1767: workers spinning on a connection lock whose holder is blocked",
    family="application spinlock on a blocked holder",
    params=dict(lib="openssl@1.1.1", memory="shared", handoff="per-message", lock="spin", tls="1.2",
                ciphers="ECDHE-ECDSA-AES128-SHA256", window=8, workers=4, conns=50, duration=30),
    expect={"openssl@1.1.1": fails(), "openssl@1.1.1+pshared,prefork-thread": passes()},
    refs=["OpenSIPS #1767"],
)
