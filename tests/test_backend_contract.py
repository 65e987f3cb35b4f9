"""One contract, every built TLS library (psutil-style contract tests).

Each case runs in a fresh process: a library's allocator hook must be the
first call into it, and the controller (this test process) must never load
a TLS library.
"""
import json
import subprocess
import sys

import pytest

from support import ROOT, tlsharness
from harness.builds import backends

AVAIL = backends.availability()
LIBS = [pytest.param(n, marks=pytest.mark.skipif(not ok, reason=f"{n} not built: {why}"))
        for n, (ok, why) in AVAIL.items()]

PROBE = r"""
import json, sys
from harness.builds import backends
be = backends.get(sys.argv[1])
ffi, lib = be.ffi, be.lib
arena = lib.tlsh_arena_create(64 << 20)
out = {"caps": be.caps()}
try:
    out["hooked"] = be.hook(arena)
except backends.Unsupported as e:
    out["hooked"] = None
    out["unsupported"] = str(e)
be.init()
out["version"] = be.version()
before = ffi.new("struct tlsh_arena_stats *"); lib.tlsh_arena_get_stats(arena, before)
try:
    ctx = be.ctx_new(sys.argv[2], sys.argv[3], int(sys.argv[4]), "", True)
    ops = be.ops()
    sess = ops.sess_new(ctx)
    out["sess_in_arena"] = bool(lib.tlsh_arena_contains(arena, sess))
    ops.free(sess)
except backends.Unsupported as e:
    out["ctx_unsupported"] = str(e)
except backends.BackendError as e:
    out["ctx_error"] = str(e)
after = ffi.new("struct tlsh_arena_stats *"); lib.tlsh_arena_get_stats(arena, after)
out["arena_allocs"] = after.n_alloc - before.n_alloc
print(json.dumps(out))
"""


def kind(lib: str) -> str:
    """openssl, wolfssl, mbedtls or gnutls, for variants too (openssl@1.1.1)."""
    return backends.info(lib).get("kind") or lib.split("@")[0]


def tls_for(lib: str) -> str:
    """TLS 1.3 where the build has it against our OpenSSL 3 client (mbed TLS 2.28:
    no 1.3; wolfSSL 4.6's TLS 1.2 handshake fails with OpenSSL 3 clients)."""
    return "1.2" if lib.startswith("mbedtls") else "1.3"


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    from harness.spec.certs import make_cert
    return make_cert(tmp_path_factory.mktemp("cert"), "ec")


def probe(lib, cert, tls=12, key=None):
    c, k = cert
    r = subprocess.run([sys.executable, "-c", PROBE, lib, c, key or k, str(tls)],
                       capture_output=True, text=True, timeout=60, cwd=str(ROOT))
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


KNOWN = {   # what is known of the Debian builds (their sources and docs; see README "Libraries")
    "openssl": {"hooked": True, "arena_used": True},
    "wolfssl": {"hooked": True, "arena_used": True},
    "mbedtls": {"hooked": None, "arena_used": False},
    "gnutls": {"hooked": True, "arena_used": False},    # exported, but a no-op
    # source builds (make libs), by their recipes in native_shim/variants.toml
    "mbedtls@3.6": {"hooked": True, "arena_used": True},   # built with MBEDTLS_PLATFORM_MEMORY
    # its CRYPTO_set_mem_functions returns 0 and CRYPTO_malloc calls malloc (crypto_memory.c)
    "libressl": {"hooked": False, "arena_used": False},
}


def known(lib):
    """By name; a LibreSSL build under another name by the version its headers declare."""
    if backends.info(lib).get("version", "").startswith("LibreSSL"):
        return KNOWN["libressl"]
    return KNOWN.get(lib) or KNOWN[kind(lib)]


@pytest.mark.parametrize("lib", LIBS)
def test_version_and_caps(lib, cert):
    out = probe(lib, cert)
    names = {"openssl": ("OpenSSL", "BoringSSL", "LibreSSL"), "wolfssl": ("wolfSSL",),
             "mbedtls": ("mbed TLS",), "gnutls": ("GnuTLS",)}[kind(lib)]
    assert out["version"].startswith(names)
    assert set(out["caps"]) >= {"alloc_hook", "lock_hook", "tls13", "flags"}


@pytest.mark.parametrize("lib", LIBS)
def test_allocator_hook_is_measured_not_assumed(lib, cert):
    out = probe(lib, cert, tls=13 if tls_for(lib) == "1.3" else 12)
    want = known(lib)
    assert out["hooked"] == want["hooked"]
    assert (out["arena_allocs"] > 0) == want["arena_used"], out
    if want["arena_used"]:
        assert out["sess_in_arena"] is True


@pytest.mark.parametrize("lib", LIBS)
def test_bad_key_is_a_clear_error(lib, cert, tmp_path):
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    out = probe(lib, cert, key=str(bad))
    assert "ctx_error" in out and out["ctx_error"].startswith(lib)


@pytest.mark.parametrize("lib", LIBS)
def test_private_memory_serves_clean(lib, tmp_path):
    r = tlsharness("run", "--lib", lib, "--memory", "private", "--handoff", "per-message",
                   "--duration", "2", "--tls", tls_for(lib), "--json", "-q", "--out", str(tmp_path),
                   timeout=60)
    out = json.loads(r.stdout)
    assert out["verdict"] == "pass", out["reason"]
    assert out["replies"] > 1000 and out["bad"] == 0


@pytest.mark.parametrize("lib", LIBS)
def test_shared_memory_runs_or_says_unsupported(lib, tmp_path):
    r = tlsharness("run", "--lib", lib, "--memory", "shared", "--handoff", "pinned",
                   "--duration", "2", "--tls", tls_for(lib), "--json", "-q", "--out", str(tmp_path),
                   timeout=60)
    out = json.loads(r.stdout)
    if known(lib)["hooked"] is None:
        assert out["verdict"] == "unsupported" and r.returncode == 3
        assert "no allocator hook" in out["reason"]
    elif known(lib)["hooked"] is False:              # a setter that is a stub (LibreSSL)
        assert out["verdict"] == "unsupported" and r.returncode == 3
        assert "is a stub" in out["reason"] and "0 of " in out["reason"], out["reason"]
    elif not known(lib)["arena_used"]:               # hook accepted, never called (GnuTLS)
        assert out["verdict"] == "unsupported" and "not in the arena" in out["reason"]
    else:
        assert out["verdict"] != "unsupported"


def test_user_prefix_builds_against_the_openssl_adapter(tmp_path):
    """--lib-prefix: a build the user made (here: the fetched 1.1.1 prefix)."""
    from native_shim import fetch
    prefix = fetch.prefix_of("openssl@1.1.1")
    if not (prefix / "usr/include/openssl/ssl.h").exists():
        pytest.skip("bullseye OpenSSL 1.1.1 not fetched (python -m native_shim.fetch)")
    cache = tmp_path / "cache"
    before = sorted(p.name for p in (ROOT / "harness" / "_native").iterdir())
    r = tlsharness("run", "--lib-prefix", str(prefix), "--memory", "private", "--duration", "1",
                   "--workers", "1", "--conns", "2", "--json", "-q", "--out", str(tmp_path / "r"),
                   env={"TLSH_CACHE": str(cache)}, timeout=300)
    out = json.loads(r.stdout)
    assert out["verdict"] == "pass" and out["lib_version"].startswith("OpenSSL 1.1.1")
    assert list((cache / "native").glob("_tlsh_v_*.so"))           # built in the user's cache
    assert sorted(p.name for p in (ROOT / "harness" / "_native").iterdir()) == before
    assert not (ROOT / "build" / "libs" / "local.toml").exists()    # the checkout untouched


def test_user_prefix_whose_adapter_does_not_load_leaves_nothing(tmp_path):
    """A prefix with libraries that lack the symbols: the adapter builds, its
    load fails; the loader's words in one line, nothing kept."""
    prefix = tmp_path / "p"
    (prefix / "include").mkdir(parents=True)
    (prefix / "lib").mkdir()
    (tmp_path / "empty.c").write_text("int tlsh_stub;\n")
    for n in ("libssl.so", "libcrypto.so"):
        subprocess.run(["cc", "-shared", "-fPIC", "-o", str(prefix / "lib" / n),
                        str(tmp_path / "empty.c")], check=True)
    cache = tmp_path / "cache"
    r = tlsharness("run", "--lib-prefix", str(prefix), "--duration", "1", "--out",
                   str(tmp_path / "r"), env={"TLSH_CACHE": str(cache)}, timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "does not load" in r.stderr and "undefined symbol" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not list((cache / "native").glob("*.so"))
    assert "name =" not in (cache / "libs.toml").read_text()
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


def test_bad_prefix_is_one_line(tmp_path):
    r = tlsharness("run", "--lib-prefix", str(tmp_path), "--out", str(tmp_path), timeout=60)
    assert r.returncode == 2 and "no include/ directory" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("lib", LIBS)
def test_interpose_puts_every_library_in_the_arena(lib, tmp_path):
    """--memory interpose: forced mode, labelled, and the arena really used."""
    r = tlsharness("run", "--lib", lib, "--memory", "interpose", "--handoff", "per-message",
                   "--duration", "2", "--tls", tls_for(lib), "--json", "-q", "--out", str(tmp_path),
                   "--keep-going", timeout=60)
    out = json.loads(r.stdout)
    assert out["memory"].startswith("interpose (FORCED")
    assert out["verdict"] != "unsupported"
    assert out["arena"]["n_alloc"] > 1000       # the stand's whole heap: sessions included


def test_libs_build_from_source_builds_registers_and_runs(tmp_path):
    """libs build: a source tree (here mbed TLS 3.6 from the mirror, the
    quickest) built with its kind's recipe into the user's cache, in a
    copy; then a run on it with objects in the arena."""
    import shutil as sh
    from native_shim import debsrc
    from native_shim.fetch import FetchError
    if not (sh.which("cmake") and sh.which("dpkg-source")):
        pytest.skip("cmake or dpkg-source missing (tools/system-deps.sh libs)")
    try:
        _suite, versions, apt = debsrc.find_sources("mbedtls", ["trixie", "forky", "sid"], "3.6",
                                                    quiet=True)
        tree, _ = debsrc.unpack("mbedtls", versions[0], apt, tmp_path / "src")
    except FetchError as e:
        pytest.skip(f"mbed TLS 3.6 source not on the mirror here: {e}")
    listing = sorted(str(p.relative_to(tree)) for p in tree.rglob("*"))
    cache = tmp_path / "cache"
    r = tlsharness("libs", "build", "my-mbedtls", "--kind", "mbedtls", "--from-source", str(tree),
                   env={"TLSH_CACHE": str(cache)}, timeout=900)
    assert r.returncode == 0, r.stderr
    assert "use --lib my-mbedtls" in r.stdout
    assert sorted(str(p.relative_to(tree)) for p in tree.rglob("*")) == listing   # not written to
    r = tlsharness("run", "--lib", "my-mbedtls", "--memory", "shared", "--handoff", "pinned",
                   "--tls", "1.3", "--duration", "1", "--json", "-q", "--out", str(tmp_path / "r"),
                   env={"TLSH_CACHE": str(cache)}, timeout=120)
    out = json.loads(r.stdout)
    assert out["lib_version"].startswith("mbed TLS 3.6") and out["arena"]["n_alloc"] > 100, out
    assert out["verdict"] != "unsupported", out["reason"]


def test_libs_build_bad_input_is_one_line(tmp_path):
    cache = {"TLSH_CACHE": str(tmp_path / "cache")}
    r = tlsharness("libs", "build", "x", "--kind", "mbedtls", "--from-source",
                   str(tmp_path / "nowhere.tar.gz"), env=cache, timeout=60)
    assert r.returncode == 2 and "no such file or directory" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    junk = tmp_path / "junk.tar.gz"
    junk.write_text("not a tarball")
    r = tlsharness("libs", "build", "x", "--kind", "mbedtls", "--from-source", str(junk),
                   env=cache, timeout=60)
    assert r.returncode == 2 and "not a tarball" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert not (tmp_path / "cache" / "builds" / "x").exists()        # nothing half-made
    r = tlsharness("libs", "build", "x", "--from-source", str(junk), env=cache, timeout=60)
    assert r.returncode == 2                                          # default kind openssl: same
    r = tlsharness("libs", "build", "--kind", "mbedtls", env=cache, timeout=60)
    assert r.returncode == 2 and "libs build NAME" in r.stderr
