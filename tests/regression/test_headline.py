"""The headline facts, as measured, kept true by the pytest plugin.

Run alone: pytest tests/regression [--tls-lib openssl] [--tls-repeat N]
"""
import pytest

pytestmark = pytest.mark.tlsharness

SHARED = dict(memory="shared", handoff="per-message", lock="spin", workers=4, conns=50)
# for expectations of failure: under handshake churn OpenSSL fails 10 of 10 runs here;
# with persistent connections 2-3 runs in 10 passed on some days (a 5-s run can miss it)
CHURN = dict(SHARED, load="churn")


def test_openssl_in_shared_memory_with_handoff_fails(tlsharness):
    # measured: 10/10 runs fail under churn (degraded/deadlock/corruption); the bar is 2 of 3
    tlsharness.must_reproduce(lib="openssl", min_rate=0.66, repeat=3, duration=8, **CHURN)


def test_openssl_failure_is_named_a_lost_wakeup(tlsharness):
    # the shared error state's double frees race the lost wake-up and sometimes win
    # (a fresh clone beside a CPU hog: 3 of 3 corruption); prefork-thread removes
    # that family and leaves this one: 12 of 12 lost wake-up, 6 of them beside a hog
    tlsharness.must_reproduce(lib="openssl", min_rate=0.33, repeat=3, duration=8,
                              verdicts=["degraded", "deadlock", "mixed"],
                              families=["lost wake-up"], mitigate="prefork-thread", **CHURN)


def test_wolfssl_in_shared_memory_with_handoff_passes(tlsharness):
    tlsharness.must_pass(lib="wolfssl", repeat=2, duration=10, **SHARED)


def test_openssl_with_the_servers_fixes_passes(tlsharness):
    # pshared locks + library state created in a throwaway thread before fork
    tlsharness.must_pass(lib="openssl", repeat=2, duration=10, mitigate="pshared,prefork-thread",
                         **SHARED)


def test_openssl_private_baseline_passes(tlsharness):
    tlsharness.must_pass(lib="openssl", repeat=1, duration=5, memory="private",
                         handoff="per-message", workers=4, conns=50)
