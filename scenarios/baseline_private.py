"""The sound baseline: each connection's TLS objects in the heap of the
worker that owns it; connections still go back to the listener after every
message, but always return to their owner."""
from harness.spec.scenario import Scenario, passes

SCENARIO = Scenario(
    summary="private memory, per-message dispatch back to the owner (sound baseline)",
    params=dict(memory="private", handoff="per-message", workers=4, conns=50, duration=10),
    # mbed TLS 2.28 has no TLS 1.3: run it with --tls 1.2 (same expectation)
    expect={lib: passes() for lib in ("openssl", "wolfssl", "gnutls", "openssl@1.1.1", "wolfssl@4.6")},
)
