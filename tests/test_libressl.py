"""LibreSSL as a measured row: its recipe (told by the tree), its version
(read from its headers), and why its allocator hook is refused (measured in
a fresh process: a stub, not a library that allocated first), which makes a
shared-memory run unsupported, not an error."""
import json

import pytest

from native_shim import headers, srcbuild
from native_shim.fetch import FetchError
from harness.builds import backends
from harness.stand import hookcheck
from support import tlsharness

OPENSSLV_LIBRESSL = """#ifndef HEADER_OPENSSLV_H
#define LIBRESSL_VERSION_NUMBER 0x4030100fL
#define LIBRESSL_VERSION_TEXT   "LibreSSL 4.3.1"
#define OPENSSL_VERSION_NUMBER	0x20000000L
#define OPENSSL_VERSION_TEXT	LIBRESSL_VERSION_TEXT
#endif
"""


def libressl_builds() -> list[str]:
    """Built backends whose headers said LibreSSL (any name)."""
    return [n for n, (ok, _) in backends.availability().items()
            if ok and backends.info(n).get("version", "").startswith("LibreSSL")]


def needs_libressl():
    found = libressl_builds()
    if not found:
        pytest.skip("no LibreSSL build (TLSH_LIBRESSL_TARBALL=... make libs LIBS=libressl)")
    return found[0]


def _tree(root, opensslv: str, build_file="CMakeLists.txt"):
    (root / "include" / "openssl").mkdir(parents=True)
    (root / "include" / "openssl" / "opensslv.h").write_text(opensslv)
    (root / build_file).write_text("")
    return root


# ---- versions from the headers ---------------------------------------------

def test_libressl_says_what_it_is_in_its_own_defines():
    assert headers.openssl_version(OPENSSLV_LIBRESSL) == "LibreSSL 4.3.1"
    only_number = "#define LIBRESSL_VERSION_NUMBER 0x3090200fL\n"
    assert headers.libressl_version(only_number) == "LibreSSL 3.9.2"


def test_openssl_versions_are_read_too_and_nothing_is_made_up():
    assert headers.openssl_version('# define OPENSSL_FULL_VERSION_STR "4.0.2"\n') == "4.0.2"
    assert headers.openssl_version(
        '# define OPENSSL_VERSION_TEXT "OpenSSL 1.1.1w  11 Sep 2023"\n') == "1.1.1w"
    assert headers.openssl_version("/* nothing here */\n") is None
    assert headers.libressl_version('#define OPENSSL_VERSION_TEXT "OpenSSL 3.0.19"\n') is None


# ---- the recipe is told by the tree ----------------------------------------

def test_a_libressl_tree_gets_its_own_recipe(tmp_path):
    lib = _tree(tmp_path / "l", OPENSSLV_LIBRESSL)
    assert headers.is_libressl_tree(lib)
    default = {"name": "openssl@3.5"}
    assert srcbuild._recipe_for("openssl", lib, default)["name"] == "libressl"
    ossl = _tree(tmp_path / "o", '# define OPENSSL_FULL_VERSION_STR "3.6.3"\n', "Configure")
    assert not headers.is_libressl_tree(ossl)
    assert srcbuild._recipe_for("openssl", ossl, default) is default
    assert not headers.is_libressl_tree(_tree(tmp_path / "h", OPENSSLV_LIBRESSL, "README"))


def test_the_libressl_recipe_runs_its_cmake_build(monkeypatch, tmp_path):
    ran = []
    monkeypatch.setattr(srcbuild, "_run", lambda cmd, cwd, log, timeout=0: ran.append(cmd))
    tree = _tree(tmp_path / "t", OPENSSLV_LIBRESSL)
    with open(tmp_path / "log", "w") as log:
        srcbuild.build_openssl({}, tree, tmp_path / "dest", log)   # a fork reaching the OpenSSL builder
    assert ran[0][:2] == ["cmake", "-S"]
    assert {"-DBUILD_SHARED_LIBS=ON", "-DLIBRESSL_TESTS=OFF", "-DLIBRESSL_APPS=OFF"} <= set(ran[0])
    assert [c[1] for c in ran[1:]] == ["--build", "--install"]


def test_the_project_recipe_needs_its_tarball_and_says_how(monkeypatch, tmp_path):
    v = next(v for v in srcbuild.variants() if v["name"] == "libressl")
    monkeypatch.delenv(v["tarball"], raising=False)
    assert srcbuild._recipe_key(v) is None            # nothing given: a cached build is kept
    with pytest.raises(FetchError, match=f"{v['tarball']} is not set.*make libs LIBS=libressl"):
        srcbuild._sources(v, tmp_path / "src", True)
    monkeypatch.setenv(v["tarball"], str(tmp_path / "absent.tar.gz"))
    with pytest.raises(FetchError, match="no such file"):
        srcbuild._sources(v, tmp_path / "src", True)
    tarball = tmp_path / "a.tar.gz"
    tarball.write_bytes(b"one")
    monkeypatch.setenv(v["tarball"], str(tarball))
    first = srcbuild._recipe_key(v)
    tarball.write_bytes(b"two")
    assert srcbuild._recipe_key(v) != first           # another tarball: a rebuild


# ---- a refused hook, classified --------------------------------------------

def test_a_stub_setter_is_told_from_a_library_that_allocated_first():
    stub = {"accepted": False, "arena_allocs": 0, "lib_allocs": 2074, "block_in_arena": False,
            "session_in_arena": False}
    what, why = hookcheck.classify("x", "openssl", stub)
    assert what == "stub"
    assert "CRYPTO_set_mem_functions is a stub" in why and "0 of 2074 allocations" in why
    assert why.endswith("try --memory interpose")
    what, why = hookcheck.classify("x", "openssl", dict(stub, accepted=True))
    assert what == "late" and "allocated before the hook" in why


def test_what_cannot_be_told_apart_stays_an_error_with_why():
    assert hookcheck.classify("x", "openssl", {"error": "no answer in 30 s"})[0] == "unknown"
    # refused, yet blocks reached the arena: no story fits, no guess
    odd = {"accepted": False, "arena_allocs": 5, "lib_allocs": 10, "block_in_arena": True}
    what, why = hookcheck.classify("x", "openssl", odd)
    assert what == "unknown" and "5 allocations reached" in why
    # refused, nothing counted and no block to try: no evidence of a stub
    bare = {"accepted": False, "arena_allocs": 0, "lib_allocs": None, "block_in_arena": None}
    assert hookcheck.classify("x", "gnutls", bare)[0] == "unknown"


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    from harness.spec.certs import make_cert
    return make_cert(tmp_path_factory.mktemp("cert"), "ec")


def test_openssl_takes_the_hook_in_a_fresh_process(cert):
    """The measurement itself: with the system OpenSSL, whose setter works,
    a fresh process's first call takes it and its blocks land in the arena."""
    if not backends.availability().get("openssl", (False,))[0]:
        pytest.skip("openssl not built")
    m = hookcheck.measure("openssl", *cert)
    assert m.get("accepted") is True, m
    assert m["arena_allocs"] > 0 and m["block_in_arena"] is True and m["session_in_arena"]
    assert hookcheck.classify("openssl", "openssl", m)[0] == "late"


def test_libressl_hook_is_measured_a_stub(cert):
    lib = needs_libressl()
    m = hookcheck.measure(lib, *cert)
    assert m.get("accepted") is False and m["version"].startswith("LibreSSL"), m
    assert m["arena_allocs"] == 0 and m["block_in_arena"] is False
    assert m["lib_allocs"] and m["lib_allocs"] > 100         # it allocates, with malloc
    assert hookcheck.classify(lib, "openssl", m)[0] == "stub"


def test_libressl_in_shared_memory_is_unsupported_with_the_measured_reason(tmp_path):
    lib = needs_libressl()
    r = tlsharness("run", "--lib", lib, "--memory", "shared", "--handoff", "per-message",
                   "--duration", "2", "--json", "-q", "--out", str(tmp_path), timeout=60)
    out = json.loads(r.stdout)
    assert out["verdict"] == "unsupported" and r.returncode == 3, out
    assert "CRYPTO_set_mem_functions is a stub" in out["reason"]
    assert "reached the hook" in out["reason"] and "try --memory interpose" in out["reason"]


def test_libs_shows_the_libressl_version(tmp_path):
    lib = needs_libressl()
    r = tlsharness("libs", timeout=60)
    row = next(line for line in r.stdout.splitlines() if line.split()[:1] == [lib])
    assert "LibreSSL " in row and "built" in row.split()

