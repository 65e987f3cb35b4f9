"""Source builds (native_shim/srcbuild.py, debsrc.py): the parts that decide
without building — which version, which files, what a bad tree gets."""
import subprocess
import sys

import pytest

from native_shim import debsrc, srcbuild
from native_shim.fetch import FetchError
from support import ROOT


def test_the_next_version_is_tried_when_the_mirror_lacks_files(monkeypatch, tmp_path):
    tried = []

    def unpack(pkg, version, apt, src):
        tried.append(version)
        if version == "3.5.9-1":
            raise FetchError("openssl_3.5.9.orig.tar.gz is not on the mirror")
        return tmp_path / "tree", "dpkg-source -x"

    monkeypatch.setattr(debsrc, "unpack", unpack)
    tree, how, version = srcbuild._unpack_first({"name": "x", "source": "openssl"},
                                                ["3.5.9-1", "3.5.7-1"], [], tmp_path / "src", True)
    assert tried == ["3.5.9-1", "3.5.7-1"] and version == "3.5.7-1"


def test_no_version_unpacks_says_why_for_each(monkeypatch, tmp_path):
    def unpack(pkg, version, apt, src):
        raise FetchError(f"{version}: 404")
    monkeypatch.setattr(debsrc, "unpack", unpack)
    with pytest.raises(FetchError) as e:
        srcbuild._unpack_first({"name": "x", "source": "p"}, ["2", "1"], [], tmp_path, True)
    assert "2: 2: 404" in str(e.value) and "1: 1: 404" in str(e.value)


def test_a_recipe_change_means_a_rebuild():
    v = {"name": "x", "configure": ["--a"]}
    assert srcbuild.recipe_hash(v) == srcbuild.recipe_hash(dict(v))
    assert srcbuild.recipe_hash(v) != srcbuild.recipe_hash(dict(v, configure=["--b"]))


def test_sha256_fields_from_a_dsc_or_an_index_record():
    text = ("Format: 3.0 (quilt)\nChecksums-Sha256:\n aa 10 p_1.orig.tar.gz\n bb 5 p_1-1.dsc\n"
            "Homepage: x\n")
    assert debsrc._sha256_field(text) == {"p_1.orig.tar.gz": "aa", "p_1-1.dsc": "bb"}
    assert debsrc._sha256_field("Version: 1\n") == {}


def test_a_tree_that_is_not_openssl_like_is_refused(tmp_path):
    (tmp_path / "README").write_text("nothing to build\n")
    with open(tmp_path / "log", "w") as log, pytest.raises(FetchError) as e:
        srcbuild.build_openssl({}, tmp_path, tmp_path / "dest", log)
    assert "not an OpenSSL-like source tree" in str(e.value)


def test_build_tree_bad_sources_leave_nothing(tmp_path):
    dest = tmp_path / "work" / "root"
    with pytest.raises(FetchError, match="no such file or directory"):
        srcbuild.build_tree("openssl", tmp_path / "absent.tar.gz", dest, quiet=True, owner=tmp_path)
    junk = tmp_path / "junk.tar.gz"
    junk.write_text("not a tarball")
    with pytest.raises(FetchError, match="not a tarball"):
        srcbuild.build_tree("openssl", junk, dest, quiet=True, owner=tmp_path)
    assert not (tmp_path / "work").exists()
    with pytest.raises(FetchError, match="no source recipe"):
        srcbuild.build_tree("rustls", junk, dest, quiet=True, owner=tmp_path)


def test_only_an_unknown_recipe_is_one_line():
    r = subprocess.run([sys.executable, "-m", "native_shim.srcbuild", "--only", "nosuch@1,mbedtls@3.6"],
                       capture_output=True, text=True, cwd=str(ROOT), timeout=60)
    assert r.returncode == 2 and "no source recipe named nosuch@1" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_debians_boringssl_tree_is_built_by_its_own_makefiles(monkeypatch, tmp_path):
    """Debian's Android BoringSSL has no Configure or top CMakeLists: the
    builder recognises its debian/libcrypto.mk and builds both libraries
    with it (no Go, no clang), then installs them and the headers."""
    tree = tmp_path / "tree"
    (tree / "debian").mkdir(parents=True)
    (tree / "debian" / "libcrypto.mk").write_text("")
    (tree / "src" / "crypto").mkdir(parents=True)
    (tree / "src" / "include" / "openssl").mkdir(parents=True)
    (tree / "src" / "include" / "openssl" / "ssl.h").write_text("/* */\n")
    ran = []

    def fake_run(cmd, cwd, log, timeout=3600):
        ran.append(cmd)
        out = tree / "debian" / "out"
        out.mkdir(exist_ok=True)
        for n in ("libcrypto", "libssl"):
            (out / f"{n}.so.0").write_bytes(b"")
    monkeypatch.setattr(srcbuild, "_run", fake_run)
    dest = tmp_path / "dest"
    with open(tmp_path / "log", "w") as log:
        srcbuild.build_openssl({}, tree, dest, log)
    assert [c[2] for c in ran] == ["debian/libcrypto.mk", "debian/libssl.mk"]
    assert any("BORINGSSL_SHARED_LIBRARY" in a for a in ran[0])
    assert any("$$ORIGIN" in a for a in ran[1])          # libssl finds its libcrypto
    assert (dest / "usr/lib/libssl.so").resolve().name == "libssl.so.0"
    assert (dest / "usr/include/openssl/ssl.h").exists()
