"""Source builds from more suites (native_shim/debsrc.py, srcbuild.py,
buildenv.py): experimental read like sid, a recipe's `deps` built first into
its prefix and found there.  Decided without building anything."""
import os
from pathlib import Path

from native_shim import buildenv, debsrc, fetchbase, srcbuild


def _sources_list(monkeypatch, tmp_path, suite):
    monkeypatch.setattr(fetchbase, "APT", tmp_path)
    monkeypatch.setattr(debsrc, "APT", tmp_path)
    monkeypatch.setattr(debsrc, "debian_mirror", lambda: ("http://mirror.invalid/debian", "/k.gpg"))
    monkeypatch.setattr(fetchbase, "debian_mirror", lambda: ("http://mirror.invalid/debian", "/k.gpg"))
    monkeypatch.setattr(debsrc, "release_codename", lambda: "bookworm")
    monkeypatch.setattr(debsrc, "apt_entries", lambda: [
        ("http://security.invalid/debian-security", ["bookworm-security"], "")])
    debsrc._apt_src(suite)
    return (tmp_path / suite / "etc" / "sources-src.list").read_text().split()


def test_experimental_and_sid_have_no_updates_or_security_suites(monkeypatch, tmp_path):
    for suite in ("experimental", "sid"):
        words = _sources_list(monkeypatch, tmp_path, suite)
        assert suite in words
        assert not [w for w in words if w.startswith(suite + "-")], words
    words = _sources_list(monkeypatch, tmp_path, "trixie")
    assert {"trixie", "trixie-updates", "trixie-security"} <= set(words)


def test_prefix_env_puts_the_prefix_first_and_restores(monkeypatch, tmp_path):
    monkeypatch.setenv("CPPFLAGS", "-DKEEP")
    monkeypatch.delenv("PKG_CONFIG_PATH", raising=False)
    with buildenv.prefix_env(tmp_path):
        assert os.environ["PKG_CONFIG_PATH"] == str(tmp_path / "usr" / "lib" / "pkgconfig")
        assert f"-Wl,-rpath,{tmp_path / 'usr' / 'lib'}" in os.environ["LDFLAGS"]
    assert os.environ["CPPFLAGS"] == "-DKEEP" and "PKG_CONFIG_PATH" not in os.environ


def test_a_recipes_deps_are_built_first_into_its_prefix(monkeypatch, tmp_path):
    order = []
    monkeypatch.setattr(srcbuild, "prefix_of", lambda name: tmp_path / "lib" / "root")
    monkeypatch.setattr(srcbuild, "_need_tools", lambda how, from_debian=True: None)
    monkeypatch.setattr(debsrc, "find_sources",
                        lambda pkg, suites, major, label, quiet: (suites[0], [f"{major}.1-1"], []))

    def unpack(pkg, version, apt, src):
        (src / pkg).mkdir(parents=True)
        return src / pkg, "dpkg-source -x"

    def builder(v, tree, dest, log):
        order.append((tree.name, os.environ.get("PKG_CONFIG_PATH")))
        (dest / "usr" / "lib").mkdir(parents=True, exist_ok=True)

    monkeypatch.setattr(debsrc, "unpack", unpack)
    monkeypatch.setitem(srcbuild.BUILDERS, "fake", builder)
    v = {"name": "g@3.8", "source": "g", "suites": ["sid"], "major": "3.8", "build": "fake",
         "deps": [{"source": "n", "suites": ["trixie"], "major": "3.10", "build": "fake"}]}
    dest = srcbuild.build(v, quiet=True)
    pc = str(dest / "usr" / "lib" / "pkgconfig")
    assert order == [("n", os.environ.get("PKG_CONFIG_PATH")), ("g", pc)]
    lines = (dest.parent / "debs.txt").read_text().splitlines()
    assert lines == ["g_3.8.1-1_sid-source", "n_3.10.1-1_trixie-source"]
    assert Path(dest.parent / ".done").exists()
