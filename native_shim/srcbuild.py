"""Library builds from Debian source packages of newer suites, with the
options a multi-process server needs, into private prefixes under build/libs.

    python -m native_shim.srcbuild [--only NAME] [--quiet]

Each recipe is a [[variant]] of native_shim/variants.toml with `source`
(the Debian source package), `suites` (the first that carries `major` wins)
and `build` (how: "cmake-mbedtls", "autotools"); `deps` (a list of the same
shape) are libraries it needs newer than this machine's, built first into
the same prefix (GnuTLS 3.8.13: nettle 3.10).  Any suite, experimental too.  A library no Debian suite
has (LibreSSL) names instead, in `tarball`, the environment variable that
gives the path of its release tarball.  A build is cached: it is redone only
when its recipe (the variant's entry, and such a tarball) changes.  One that cannot be
done here (no such source, a failing step) leaves its reason in
<prefix>/../reason.txt, which `tlsharness libs` shows; nothing half-built is
kept.  Then `python -m native_shim.build` builds the adapters against them.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from native_shim import debsrc, headers
from native_shim.buildenv import prefix_env
from native_shim.fetchbase import FetchError, prefix_of, variants

JOBS = str(min(2, os.cpu_count() or 1))


def recipe_hash(v: dict) -> str:
    return hashlib.sha256(json.dumps(v, sort_keys=True).encode()).hexdigest()[:16]


def die_with_parent() -> None:
    """PR_SET_PDEATHSIG=SIGKILL: a build step whose caller is killed, even by
    SIGKILL, stops too (no build finishing unseen into an unregistered folder)."""
    import ctypes
    import signal
    ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)


def _run(cmd: list[str], cwd: Path, log, timeout: int = 3600) -> None:
    log.write(f"$ {' '.join(cmd)}\n")
    log.flush()
    r = subprocess.run(cmd, cwd=str(cwd), stdout=log, stderr=subprocess.STDOUT, timeout=timeout,
                       preexec_fn=die_with_parent)
    if r.returncode != 0:
        log.flush()
        text = Path(log.name).read_text(errors="replace")
        raise FetchError(f"{' '.join(cmd[:3])} failed: {debsrc.tail(text)}")


def build_cmake_mbedtls(v: dict, tree: Path, dest: Path, log) -> None:
    """mbed TLS with CMake: shared libraries, the config options set with the
    tree's own scripts/config.py."""
    for opt in v.get("config", []):
        _run([sys.executable, "scripts/config.py", "set", opt], tree, log, 120)
    b = tree / "build-tlsh"
    b.mkdir(exist_ok=True)
    _run(["cmake", "-S", ".", "-B", str(b), f"-DCMAKE_INSTALL_PREFIX={dest / 'usr'}",
          "-DUSE_SHARED_MBEDTLS_LIBRARY=On", "-DUSE_STATIC_MBEDTLS_LIBRARY=Off",
          "-DENABLE_TESTING=Off", "-DENABLE_PROGRAMS=Off", "-DCMAKE_BUILD_TYPE=Release",
          "-DCMAKE_INSTALL_LIBDIR=lib"], tree, log, 600)
    _run(["cmake", "--build", str(b), "-j", JOBS], tree, log)
    _run(["cmake", "--install", str(b)], tree, log, 600)


def build_autotools(v: dict, tree: Path, dest: Path, log) -> None:
    """./configure (made by autoreconf, without gtk-doc's files, when the tree
    has none or the recipe says `autoreconf`: Debian's patches edit
    configure.ac) with the recipe's options, then make and make install."""
    if v.get("autoreconf") or not (tree / "configure").exists():
        with prefix_env.extra({"GTKDOCIZE": "true"}):
            _run(["autoreconf", "-fi"], tree, log, 900)
    _run(["./configure", f"--prefix={dest / 'usr'}", "--libdir=" + str(dest / "usr" / "lib"),
          *v.get("configure", [])], tree, log, 900)
    _run(["make", f"-j{JOBS}"], tree, log)
    _run(["make", "install"], tree, log, 600)


# BoringSSL as Debian's android-platform-external-boringssl builds it (its
# debian/rules flags), with gcc: libcrypto.so.0 and libssl.so.0
BSSL_CPPFLAGS = ["-DNDEBUG", "-DBORINGSSL_ANDROID_SYSTEM", "-DBORINGSSL_IMPLEMENTATION",
                 "-DBORINGSSL_SHARED_LIBRARY", "-DOPENSSL_SMALL", "-fno-strict-aliasing",
                 "-fno-exceptions"]


def build_boringssl_mk(tree: Path, dest: Path, log) -> None:
    """The Debian package's own makefiles (debian/libcrypto.mk, libssl.mk),
    which need neither Go nor clang; installed as <dest>/usr/lib and
    usr/include/openssl.  libssl finds its libcrypto by $ORIGIN."""
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
    lib = dest / "usr" / "lib"
    common = [f"DEB_HOST_ARCH={arch}", "CC=" + (shutil.which("gcc") or "cc"),
              "CXX=" + (shutil.which("g++") or "c++")]
    _run(["make", "-f", "debian/libcrypto.mk", "build", f"-j{JOBS}", *common,
          "CFLAGS=-O2 -fPIC -std=gnu17 -fvisibility=hidden -Wa,--noexecstack",
          "CPPFLAGS=" + " ".join(BSSL_CPPFLAGS + ["-Isrc/crypto", "-Isrc/include"])], tree, log)
    _run(["make", "-f", "debian/libssl.mk", "build", f"-j{JOBS}", *common,
          "CXXFLAGS=-O2 -fPIC -std=gnu++2a -fvisibility=hidden",
          "CPPFLAGS=" + " ".join(BSSL_CPPFLAGS + ["-Isrc/include"]),
          "LDFLAGS=-Ldebian/out -Wl,-soname,libssl.so.0 -Wl,-rpath,\\$$ORIGIN -lcrypto -shared"],
         tree, log)
    lib.mkdir(parents=True, exist_ok=True)
    for name in ("libcrypto", "libssl"):
        shutil.copy2(tree / "debian" / "out" / f"{name}.so.0", lib / f"{name}.so.0")
        (lib / f"{name}.so").symlink_to(f"{name}.so.0")
    shutil.copytree(tree / "src" / "include" / "openssl", dest / "usr" / "include" / "openssl")


def build_openssl(v: dict, tree: Path, dest: Path, log) -> None:
    """OpenSSL: shared libraries and headers only, as distributions build
    them; no tests, docs or apps.  A fork is built by what its tree has:
    LibreSSL's ./configure, BoringSSL's CMakeLists.txt or, in Debian's
    Android snapshot, its debian/ makefiles."""
    if headers.is_libressl_tree(tree):
        build_libressl({}, tree, dest, log)
    elif (tree / "debian" / "libcrypto.mk").exists() and (tree / "src" / "crypto").is_dir():
        build_boringssl_mk(tree, dest, log)
    elif (tree / "Configure").exists():
        _run(["./Configure", f"--prefix={dest / 'usr'}", "--libdir=lib", "shared", "no-tests",
              *v.get("configure", [])], tree, log, 900)
        _run(["make", f"-j{JOBS}", "build_libs"], tree, log)
        _run(["make", "install_dev"], tree, log, 600)
    elif (tree / "configure").exists() or (tree / "configure.ac").exists():
        build_autotools({"configure": ["--enable-shared", "--disable-static"]}, tree, dest, log)
    elif (tree / "CMakeLists.txt").exists():
        b = tree / "build-tlsh"
        _run(["cmake", "-S", ".", "-B", str(b), f"-DCMAKE_INSTALL_PREFIX={dest / 'usr'}",
              "-DBUILD_SHARED_LIBS=1", "-DCMAKE_BUILD_TYPE=Release",
              "-DCMAKE_INSTALL_LIBDIR=lib"], tree, log, 600)
        _run(["cmake", "--build", str(b), "-j", JOBS], tree, log)
        _run(["cmake", "--install", str(b)], tree, log, 600)
    else:
        raise FetchError(f"{tree.name}: no Configure, configure or CMakeLists.txt: not an "
                         "OpenSSL-like source tree")


def build_libressl(v: dict, tree: Path, dest: Path, log) -> None:
    """LibreSSL's portable tree with its CMake build: shared libraries and
    headers, no tests and no apps (its ./configure where it has no
    CMakeLists.txt)."""
    if not (tree / "CMakeLists.txt").exists():
        build_autotools({"configure": ["--enable-shared", "--disable-static"]}, tree, dest, log)
        return
    b = tree / "build-tlsh"
    _run(["cmake", "-S", ".", "-B", str(b), f"-DCMAKE_INSTALL_PREFIX={dest / 'usr'}",
          "-DBUILD_SHARED_LIBS=ON", "-DLIBRESSL_TESTS=OFF", "-DLIBRESSL_APPS=OFF",
          "-DCMAKE_BUILD_TYPE=Release", "-DCMAKE_INSTALL_LIBDIR=lib"], tree, log, 600)
    _run(["cmake", "--build", str(b), "-j", JOBS], tree, log)
    _run(["cmake", "--install", str(b)], tree, log, 600)


BUILDERS = {"cmake-mbedtls": build_cmake_mbedtls, "autotools": build_autotools,
            "openssl": build_openssl, "boringssl": build_openssl, "libressl": build_libressl}
TOOLS = {"cmake-mbedtls": ["cmake", "make", "cc", "dpkg-source"],
         "libressl": ["cmake", "make", "cc"],
         "autotools": ["make", "cc", "dpkg-source", "autoreconf", "libtoolize"],
         "openssl": ["make", "cc", "perl", "dpkg-source"],
         "boringssl": ["make", "gcc", "g++", "dpkg-source"]}


def _need_tools(how: str, from_debian: bool = True) -> None:
    """The tools the builder `how` runs (dpkg-source only for Debian packages)."""
    missing = [t for t in TOOLS[how] if (from_debian or t != "dpkg-source")
               and not shutil.which(t)]
    if missing:
        raise FetchError(f"missing build tools: {', '.join(missing)} (apt-get install them)")


def _unpack_first(v: dict, versions: list[str], apt: list[str], src: Path, quiet: bool):
    """The newest of `versions` whose files the mirror has, unpacked:
    (tree, how, version)."""
    errors = []
    for version in versions:
        try:
            tree, how = debsrc.unpack(v["source"], version, apt, src)
            return tree, how, version
        except FetchError as e:
            errors.append(f"{version}: {e}")
            if not quiet and version != versions[-1]:
                print(f"{v['name']}: {version} cannot be unpacked ({e}); trying the next",
                      flush=True)
            shutil.rmtree(src, ignore_errors=True)
    raise FetchError("; ".join(errors))


def build(v: dict, quiet: bool = False) -> Path:
    """Build one recipe (or keep its cached build); the prefix."""
    dest = prefix_of(v["name"])
    base = dest.parent
    done = base / ".done"
    want = _recipe_key(v)
    if done.exists() and (want is None or done.read_text().strip() == want):
        return dest             # (a tarball recipe given no tarball keeps what it built)
    _need_tools(v["build"])
    for stale in (dest, base / "src", done, base / "reason.txt"):
        if stale.is_dir():
            shutil.rmtree(stale)
        elif stale.exists():
            stale.unlink()
    base.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    suite, tree, how, version = _sources(v, base / "src", quiet)
    with open(base / "build.log", "w") as log:
        try:
            deps = [_build_dep(d, v["name"], base / "src" / "deps", dest, log, quiet)
                    for d in v.get("deps", [])]
            if not quiet:
                print(f"{v['name']}: building {v['source']} {version} ({suite}, {how}) ...",
                      flush=True)
            with prefix_env(dest) if deps else contextlib.nullcontext():
                BUILDERS[v["build"]](v, tree, dest, log)
        except BaseException:
            shutil.rmtree(dest, ignore_errors=True)
            raise
    seconds = round(time.monotonic() - t0)
    (base / "debs.txt").write_text(f"{v['source']}_{version}_{suite}-source\n"
                                   + "".join(f"{d['source']}_{d['version']}_{d['suite']}-source\n"
                                             for d in deps))
    (base / "build.json").write_text(json.dumps({"name": v["name"], "source": v["source"],
                                                  "version": version, "suite": suite,
                                                  "unpacked": how, "seconds": seconds,
                                                  "deps": deps, "recipe": want}, indent=2) + "\n")
    shutil.rmtree(base / "src", ignore_errors=True)      # the tree is large; the log stays
    done.write_text(want + "\n")
    if not quiet:
        print(f"{v['name']}: built in {seconds} s into {dest}", flush=True)
    return dest


def _build_dep(d: dict, name: str, src: Path, dest: Path, log, quiet: bool) -> dict:
    """A library the recipe needs newer than this machine's (GnuTLS 3.8.13:
    nettle 3.10), into the recipe's own prefix first; what build.json says."""
    suite, versions, apt = debsrc.find_sources(d["source"], d["suites"], d.get("major", ""),
                                               f"{name} (needs)", quiet)
    tree, how, version = _unpack_first(dict(d, name=name), versions, apt, src, quiet)
    if not quiet:
        print(f"{name}: first {d['source']} {version} ({suite}, {how}) into its prefix ...",
              flush=True)
    BUILDERS[d["build"]](d, tree, dest, log)
    return {"source": d["source"], "version": version, "suite": suite, "unpacked": how}


def _tarball(v: dict) -> Path | None:
    """The release tarball a `tarball` recipe is given: the file its
    environment variable names (None when unset)."""
    path = os.environ.get(v["tarball"], "")
    return Path(path) if path else None


def _recipe_key(v: dict) -> str | None:
    """What a cached build must have been made from: the recipe, and for a
    tarball recipe the tarball's contents too (None: no tarball given)."""
    if not v.get("tarball"):
        return recipe_hash(v)
    t = _tarball(v)
    if t is None or not t.is_file():
        return None
    return recipe_hash(dict(v, tarball_sha256=hashlib.sha256(t.read_bytes()).hexdigest()))


def _sources(v: dict, src: Path, quiet: bool) -> tuple[str, Path, str, str]:
    """(suite, tree, how, version): the newest Debian source package of the
    recipe's suites, or (a recipe with `tarball`, a library no Debian suite
    has) the release tarball its environment variable names."""
    if not v.get("tarball"):
        suite, versions, apt = debsrc.find_sources(v["source"], v["suites"], v.get("major", ""),
                                                   v["name"], quiet)
        tree, how, version = _unpack_first(v, versions, apt, src, quiet)
        return suite, tree, how, version
    t = _tarball(v)
    if t is None:
        raise FetchError(f"{v['tarball']} is not set: {v['name']} is built from a release tarball "
                         f"({v.get('upstream', 'its upstream')}): "
                         f"{v['tarball']}=PATH make libs LIBS={v['name']}")
    if not t.is_file():
        raise FetchError(f"{v['tarball']}={t}: no such file")
    src.mkdir(parents=True, exist_ok=True)
    tree = _tree_of(t.resolve(), src)
    version = headers.version_of([tree / "include"]) or "?"
    return "release", tree, f"tarball {t.name}", version.split()[-1]


# a user's own source tree (`tlsharness libs build`) is built with the recipe
# of its kind's variant here: the same options a multi-process server needs;
# an OpenSSL fork with a recipe of its own by it (FORK_RECIPE, told by the tree)
KIND_RECIPE = {"openssl": "openssl@3.5", "wolfssl": "wolfssl@5.7", "mbedtls": "mbedtls@3.6",
               "gnutls": "gnutls@3.8"}
FORK_RECIPE = {"libressl": headers.is_libressl_tree}


def _recipe_for(kind: str, tree: Path, default: dict) -> dict:
    """The recipe a tree of `kind` is built with: a fork's own (LibreSSL's
    portable tree, told by its layout and headers), else the kind's."""
    for name, is_it in FORK_RECIPE.items():
        if kind == "openssl" and is_it(tree):
            return next(v for v in variants() if v["name"] == name)
    return default


def _tree_of(source: Path, work: Path) -> Path:
    """A private copy of the user's tree, or their tarball unpacked: the
    build never writes into what the user gave."""
    tree = work / "tree"
    if source.is_dir():
        shutil.copytree(source, tree, symlinks=True)
        return tree
    if not source.is_file():
        raise FetchError(f"--from-source {source}: no such file or directory")
    tree.mkdir(parents=True)
    r = subprocess.run(["tar", "-xf", str(source), "-C", str(tree)], capture_output=True,
                       text=True, timeout=600)
    if r.returncode != 0:
        raise FetchError(f"--from-source {source}: not a tarball tar can read ({debsrc.tail(r.stderr)})")
    inner = [d for d in tree.iterdir()]
    return inner[0] if len(inner) == 1 and inner[0].is_dir() else tree


def build_tree(kind: str, source: Path, dest: Path, quiet: bool = False,
               owner: Path | None = None) -> dict:
    """Build a user's source tree or tarball of `kind` into `dest` with the
    recipe of KIND_RECIPE[kind]; nothing is kept when it fails.  Returns
    what build.json says of it.  dest's parent (the build's own folder, which
    is emptied first) must lie strictly inside `owner` (the folder of builds
    the caller owns): checked before anything is deleted."""
    from harness.builds.safepath import inside
    if owner is None or not inside(owner, dest.parent):
        raise FetchError(f"{dest.parent}: not inside the folder of builds "
                         f"{owner or '(none given)'}: nothing deleted")
    recipe = next((v for v in variants() if v["name"] == KIND_RECIPE.get(kind)), None)
    if recipe is None:
        raise FetchError(f"--kind {kind}: no source recipe for it (one of "
                         f"{', '.join(k for k in KIND_RECIPE)})")
    _need_tools(recipe["build"], from_debian=False)
    work = dest.parent
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    t0 = time.monotonic()
    try:
        tree = _tree_of(source.resolve(), work)
        recipe = _recipe_for(kind, tree, recipe)
        _need_tools(recipe["build"], from_debian=False)
        version = headers.version_of([tree / "include"]) if kind == "openssl" else None
        if not quiet:
            print(f"building {source} as {kind} with the {recipe['name']} recipe "
                  f"(log: {work / 'build.log'}) ...", flush=True)
        with open(work / "build.log", "w") as log:
            BUILDERS[recipe["build"]](recipe, tree, dest, log)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    shutil.rmtree(work / "tree", ignore_errors=True)
    info = {"kind": kind, "source": str(source), "recipe": recipe["name"],
            "version": version or "", "seconds": round(time.monotonic() - t0)}
    (work / "build.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def source_variants() -> list[dict]:
    return [v for v in variants() if v.get("build") in BUILDERS]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="variants by name, comma- or space-separated (default: all)")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)
    only = a.only.replace(",", " ").split() if a.only else []
    known = [v["name"] for v in source_variants()]
    unknown = [n for n in only if n not in known]
    if unknown:
        print(f"srcbuild: no source recipe named {', '.join(unknown)} "
              f"(known: {', '.join(known)})", file=sys.stderr)
        return 2
    todo = [v for v in source_variants() if not only or v["name"] in only]
    failed = 0
    for v in todo:
        try:
            build(v, a.quiet)
        except (FetchError, OSError, subprocess.TimeoutExpired) as e:
            failed += 1
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            base = prefix_of(v["name"]).parent
            base.mkdir(parents=True, exist_ok=True)
            (base / "reason.txt").write_text(reason + "\n")
            print(f"{v['name']}: not built: {reason}", file=sys.stderr)
    return 0 if not failed else 3


if __name__ == "__main__":
    sys.exit(main())
