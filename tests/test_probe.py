"""The probe measures: its readings of the Debian builds must agree with
what is known of them (their sources and docs; README "Libraries")."""
import json

import pytest

from support import tlsharness
from harness.builds import backends

AVAIL = backends.availability()


@pytest.fixture(scope="module")
def rows():
    r = tlsharness("probe", "--json", timeout=300)
    assert r.returncode == 0, r.stderr
    return {row["lib"]: row for row in json.loads(r.stdout)}


def need(lib):
    if not AVAIL.get(lib, (False,))[0]:
        pytest.skip(f"{lib} not built")


def test_every_built_library_did_real_handshakes(rows):
    for name, (built, _) in AVAIL.items():
        if built:
            assert rows[name]["handshakes"] == 5, rows[name]
            assert rows[name]["preload"], "the LD_PRELOAD counter was not active"


def test_openssl_allocator_effective_no_lock_hook(rows):
    need("openssl")
    r = rows["openssl"]
    assert r["alloc_hook_accepted"] is True and r["arena_allocs_during_handshakes"] > 100
    assert r["lock_hook"] is None and r["session_in_arena"]
    assert r["init"]["rwlock_init"] + r["during_handshakes"]["rwlock_init"] > 0
    assert r["init"]["pshared_requests"] == 0       # every lock PROCESS_PRIVATE


def test_wolfssl_allocator_effective_and_thread_local(rows):
    need("wolfssl")
    r = rows["wolfssl"]
    assert r["alloc_hook_accepted"] is True and r["arena_allocs_during_handshakes"] > 0
    assert "HAVE_THREAD_LS=1" in r["caps"]["flags"]
    assert any((l["tls_segment_bytes"] or 0) > 0 for l in r["libraries"])


def test_mbedtls_debian_has_no_allocator_hook(rows):
    need("mbedtls")
    r = rows["mbedtls"]
    assert r["alloc_hook_accepted"] is None and r["arena_allocs_during_handshakes"] == 0
    assert "MBEDTLS_PLATFORM_MEMORY=0" in r["caps"]["flags"] and not r["session_in_arena"]


def test_gnutls_memory_functions_exported_but_never_called(rows):
    need("gnutls")
    r = rows["gnutls"]
    assert r["alloc_hook_accepted"] is True
    assert r["arena_allocs_during_handshakes"] == 0
    assert r["reading"]["alloc"].startswith("accepted, never called")
    assert r["during_handshakes"]["direct_allocs"] > 0      # it allocates with malloc instead


def test_allocations_past_the_hook_are_counted(rows):
    """The counter sees malloc called by the library's own code: none where
    the hook takes everything (OpenSSL's setter), every allocation where
    there is no hook (mbed TLS as Debian builds it)."""
    need("openssl")
    need("mbedtls")
    assert rows["openssl"]["watched_code_ranges"] > 0
    assert rows["openssl"]["during_handshakes"]["direct_allocs"] == 0
    assert rows["mbedtls"]["during_handshakes"]["direct_allocs"] > 100
    assert rows["openssl"]["reading"]["alloc"].endswith("; 0 past it")


def test_boringssl_link_time_hook_places_sessions_but_not_record_buffers(rows):
    """BoringSSL's allocator is replaced by defining OPENSSL_memory_alloc and
    friends; the session lands in the arena, but its record buffers are
    malloc'ed directly (ssl_buffer.cc), past the hook."""
    need("boringssl")
    r = rows["boringssl"]
    assert r["alloc_hook_accepted"] is True and r["arena_allocs_during_handshakes"] > 100
    assert r["session_in_arena"] and "OPENSSL_memory_alloc(link time)" in r["caps"]["flags"]
    assert r["during_handshakes"]["direct_allocs"] > 0


def test_markdown_output(tmp_path):
    md = tmp_path / "probe.md"
    r = tlsharness("probe", "--lib", "openssl", "--markdown", str(md), timeout=120)
    assert r.returncode == 0 and md.read_text().startswith("| library |")


def test_unknown_library_is_one_line():
    r = tlsharness("probe", "--lib", "nosuch", timeout=30)
    assert r.returncode == 2 and "unknown library 'nosuch'" in r.stderr and "Traceback" not in r.stderr
