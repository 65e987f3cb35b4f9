"""OpenSIPS built from a release tarball (or its git tag) into a private
prefix under the user's cache: `tlsharness servers build opensips`.

Only what `tlsharness target opensips` loads is built: the core and the
modules sl, mi_fifo, proto_tls, tls_mgm and the TLS library module
(tls_openssl or tls_wolfssl), plus the small ones the bug-report scenarios
use.  One build is one folder <cache>/servers/<name>/ with sbin/opensips,
modules/*.so, build.log and build.json; a build that fails leaves nothing
but its one-line reason.

Variants:
- tls_lib "openssl": against the system OpenSSL, or any OpenSSL build
  `tlsharness libs` knows (its headers and libraries; the module's RUNPATH
  points at them);
- tls_lib "wolfssl": the module's own static wolfSSL, configured by its
  Makefile (the tarball lacks the git submodule: the source comes from a
  tarball or tree the user gives, else Debian's wolfssl source package);
- override False: OpenSIPS 3.x's process-shared pthread override
  (`#include "ssl_tweaks.h"` in main.c) taken out, so the server's own fix
  for the lost wake-up can be switched off, as `--mitigate` does in the stand.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from harness.builds import native, sources
from harness.builds.safepath import check_name, inside

TLS_LIBS = ("openssl", "wolfssl")
BASE_MODULES = ("sl", "mi_fifo", "proto_tls", "tls_mgm", "signaling", "tm",
                "db_text")
UPSTREAM = "https://github.com/OpenSIPS/opensips.git"
TWEAKS = '#include "ssl_tweaks.h"'


class OpensipsBuildError(sources.SourceBuildError):
    """A build that cannot be done: the message is one line."""


def default_name(version: str, tls_lib: str, override: bool, openssl: str | None) -> str:
    lib = tls_lib if not openssl else f"openssl-{openssl.replace('@', '')}"
    return f"opensips-{version}-{lib}" + ("" if override else "-nooverride")


def _tree_version(tree: Path) -> str:
    text = (tree / "Makefile.defs").read_text(errors="replace")
    parts = [re.search(rf"^VERSION_{k}\s*=\s*(\d+)", text, re.M) for k in ("MAJOR", "MINOR", "SUBMINOR")]
    if not all(parts):
        raise OpensipsBuildError("Makefile.defs holds no VERSION_MAJOR/MINOR/SUBMINOR: "
                                 "not an OpenSIPS source tree")
    return ".".join(p.group(1) for p in parts)


def _is_top(d: Path) -> bool:
    return (d / "main.c").exists() and (d / "Makefile.defs").exists()


def _fetch_tag(tag: str, work: Path) -> Path:
    if not shutil.which("git"):
        raise OpensipsBuildError("--fetch needs git (apt-get install git)")
    r = subprocess.run(["git", "clone", "-q", "--depth", "1", "--branch", tag, UPSTREAM,
                        str(work / "src")], capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["no output"])[-1]
        raise OpensipsBuildError(f"cannot fetch OpenSIPS {tag} from {UPSTREAM} ({last[:160]}); "
                                 "without network, pass --from-source with its release tarball")
    return work / "src"


def _drop_override(top: Path) -> None:
    main = top / "main.c"
    text = main.read_text(errors="replace")
    if TWEAKS not in text:
        raise OpensipsBuildError("--no-pshared-override: this tree's main.c does not include "
                                 "ssl_tweaks.h (OpenSIPS 4.x has no such override)")
    main.write_text(text.replace(TWEAKS, "/* tlsharness: ssl_tweaks.h left out */"))


def _openssl_env(openssl: str | None) -> tuple[dict, str]:
    """make variables that point tls_openssl at a `tlsharness libs` build, and
    the library folder; the system OpenSSL when None."""
    if not openssl:
        return {}, ""
    info = next((i for i in native.build_report().values()
                 if i.get("lib") == openssl and i.get("kind") == "openssl"), None)
    if info is None or not info.get("prefix"):
        raise OpensipsBuildError(f"--openssl {openssl}: not an OpenSSL build tlsharness knows "
                                 "(see `tlsharness libs`)")
    prefix = Path(info["prefix"])
    hdr = next(iter(sorted(prefix.glob("**/include/openssl/ssl.h"))), None)
    lib = next(iter(sorted(prefix.glob("**/libssl.so*"))), None)
    if hdr is None or lib is None:
        raise OpensipsBuildError(f"--openssl {openssl}: {prefix} has no include/openssl/ssl.h "
                                 "and libssl.so (is it built? `tlsharness libs`)")
    inc, libdir = hdr.parent.parent, lib.parent
    return ({"PKG_CONFIG_LIBDIR": "/nonexistent", "LOCALBASE": "/nonexistent",
             "CC_EXTRA_OPTS": f"-I{inc}",
             "LD_EXTRA_OPTS": f"-L{libdir} -Wl,-rpath,{libdir} -Wl,--disable-new-dtags"},
            str(libdir))


def _wolfssl_source(top: Path, given: Path | None, log) -> str:
    """Fill modules/tls_wolfssl/lib/wolfssl (a git submodule upstream) from the
    user's tarball or tree, else Debian's wolfssl 5.7 source package."""
    dest = top / "modules" / "tls_wolfssl" / "lib" / "wolfssl"
    shutil.rmtree(dest, ignore_errors=True)
    if given is not None:
        tmp = top / ".wolfssl-src"
        if given.is_dir():
            shutil.copytree(given, dest, symlinks=True)
        else:
            try:
                with tarfile.open(given) as tf:
                    tf.extractall(tmp, filter="data")
            except (tarfile.TarError, OSError, EOFError) as e:
                raise OpensipsBuildError(f"--wolfssl-source {given}: cannot unpack it "
                                         f"({str(e)[:120]})") from None
            inner = [d for d in tmp.iterdir() if d.is_dir()]
            shutil.move(str(inner[0] if len(inner) == 1 else tmp), dest)
        how = f"wolfSSL from {given.name}"
    else:
        deb = top / ".wolfssl-deb"
        r = subprocess.run([sys.executable, "-m", "native_shim.debsrc", "wolfssl", "--major", "5.7",
                            "--suites", "trixie,forky,sid", "--into", str(deb)],
                           capture_output=True, text=True, timeout=1800, cwd=str(native.ROOT))
        if r.returncode != 0:
            last = (r.stderr.strip().splitlines() or ["no output"])[-1]
            raise OpensipsBuildError(f"tls_wolfssl needs wolfSSL's source: Debian's could not be "
                                     f"had ({last[:160]}); pass --wolfssl-source TARBALL")
        tree, version, suite = r.stdout.strip().splitlines()[-1].split("\t")
        shutil.move(tree, dest)
        how = f"wolfSSL {version} (Debian {suite} source package)"
    if not (dest / "configure").exists() and not (dest / "autogen.sh").exists():
        raise OpensipsBuildError("the wolfSSL source has neither configure nor autogen.sh")
    print(f"tls_wolfssl: {how}", file=log, flush=True)
    return how


def _make(args: list[str], top: Path, log, env: dict, timeout: int = 1800) -> None:
    print("$ make " + " ".join(args), file=log, flush=True)
    try:
        r = subprocess.run(["make", "-j2", *args], cwd=str(top), stdout=log,
                           stderr=subprocess.STDOUT, env=dict(os.environ, **env),
                           timeout=timeout, preexec_fn=sources.die_with_parent)
    except subprocess.TimeoutExpired:
        raise OpensipsBuildError(f"make {args[0]} took over {timeout} s") from None
    if r.returncode != 0:
        raise OpensipsBuildError(f"make {args[0]} failed: {sources.first_error(log.name)}")


def _need_tools(tls_lib: str) -> None:
    need = ["make", "gcc", "bison", "flex"] + (["autoconf", "automake", "libtool"]
                                               if tls_lib == "wolfssl" else [])
    missing = [t for t in need if not shutil.which(t if t != "libtool" else "libtoolize")]
    if missing:
        raise OpensipsBuildError(f"building OpenSIPS needs {' '.join(missing)} "
                                 f"(apt-get install {' '.join(missing)})")


def _install(top: Path, dest: Path, modules: tuple[str, ...]) -> None:
    (dest / "sbin").mkdir(parents=True)
    (dest / "modules").mkdir()
    shutil.copy2(top / "opensips", dest / "sbin" / "opensips")
    for m in modules:
        so = top / "modules" / m / f"{m}.so"
        if not so.exists():
            raise OpensipsBuildError(f"module {m} was not built ({so.name} missing)")
        shutil.copy2(so, dest / "modules" / so.name)


def binary_facts(binary: Path, tls_module: Path | None) -> dict:
    """What the built files say of themselves: whether the binary exports the
    process-shared pthread override, and which libssl the TLS module loads."""
    nm = subprocess.run(["nm", "-D", "--defined-only", str(binary)], capture_output=True,
                        text=True, timeout=60)
    exported = {l.split()[-1] for l in nm.stdout.splitlines() if " T " in l}
    facts = {"pshared_override": sorted(exported & {"pthread_mutex_init", "pthread_rwlock_init",
                                                     "pthread_mutexattr_init",
                                                     "pthread_rwlockattr_init"})}
    if tls_module is not None and tls_module.exists():
        ldd = subprocess.run(["ldd", str(tls_module)], capture_output=True, text=True, timeout=60)
        libs = [l.split("=>")[1].split("(")[0].strip() for l in ldd.stdout.splitlines()
                if "=>" in l and re.search(r"lib(ssl|crypto|wolfssl)\.so", l)]
        facts["tls_links"] = libs or ["(static)"]
    return facts


def build(source: Path | None, tls_lib: str = "openssl", openssl: str | None = None,
          override: bool = True, name: str | None = None, fetch_tag: str | None = None,
          wolfssl_source: Path | None = None, progress=print) -> dict:
    """Build one OpenSIPS variant; returns its build.json.  Nothing is kept
    when it fails: the work folder is removed and the reason is one line."""
    if tls_lib not in TLS_LIBS:
        raise OpensipsBuildError(f"--tls-lib must be one of {', '.join(TLS_LIBS)} (got {tls_lib!r})")
    if openssl and tls_lib != "openssl":
        raise OpensipsBuildError("--openssl names the library of tls_openssl: use it with "
                                 "--tls-lib openssl")
    if source is None and not fetch_tag:
        raise OpensipsBuildError("give --from-source TARBALL_OR_DIR (an OpenSIPS release "
                                 "tarball, e.g. opensips-3.6.8.tar.gz) or --fetch TAG "
                                 f"(clones the tag from {UPSTREAM}, needs network)")
    if name is not None:
        check_name(name, "build name")
    _need_tools(tls_lib)
    env, libdir = _openssl_env(openssl)
    root, work = sources.work_folder("opensips", OpensipsBuildError)
    t0 = time.monotonic()
    try:
        return _build_in(work, root, source, tls_lib, openssl, override, name, fetch_tag,
                         wolfssl_source, env, libdir, t0, progress)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _build_in(work, root, source, tls_lib, openssl, override, name, fetch_tag,
              wolfssl_source, env, libdir, t0, progress) -> dict:
    top = (sources.unpack(source.resolve(), work, _is_top, "OpenSIPS", "main.c and Makefile.defs",
                          OpensipsBuildError)
           if source is not None else _fetch_tag(fetch_tag, work))
    version = _tree_version(top)
    name = check_name(name or default_name(version, tls_lib, override, openssl), "build name")
    dest = root / name
    if not inside(root, dest):
        raise OpensipsBuildError(f"{dest} is not inside {root}: refused")
    if not override:
        _drop_override(top)
    tls_mod = f"tls_{tls_lib}"
    modules = BASE_MODULES + (tls_mod,)
    log_path = work / "build.log"
    with open(log_path, "w") as log:
        wolf = _wolfssl_source(top, wolfssl_source, log) if tls_lib == "wolfssl" else None
        progress(f"building OpenSIPS {version} with {tls_mod}"
                 f"{'' if override else ', without its pshared override'} "
                 f"(log: {dest / 'build.log'}) ...")
        _make(["app"], top, log, {})
        progress(f"  core built in {time.monotonic() - t0:.0f} s; modules ...")
        _make(["modules", f"module={' '.join(modules)}"], top, log, env)
    staged = work / "out"
    _install(top, staged, modules)
    facts = binary_facts(staged / "sbin" / "opensips", staged / "modules" / f"{tls_mod}.so")
    if override and version.startswith("3.") and not facts["pshared_override"]:
        raise OpensipsBuildError("the built binary exports no pthread_*_init override although "
                                 "ssl_tweaks.h was left in: this tree differs from 3.x")
    info = {"name": name, "server": "opensips", "version": version, "tls_lib": tls_lib,
            "openssl": openssl or ("system" if tls_lib == "openssl" else None),
            "wolfssl": wolf, "override": override, **facts,
            "binary": str(root / name / "sbin" / "opensips"),
            "modules": str(root / name / "modules"),
            "source": source.name if source is not None else f"git tag {fetch_tag}",
            "source_sha256": sources.sha256(source) if source is not None else None,
            "seconds": round(time.monotonic() - t0, 1), "built": time.strftime("%Y-%m-%d %H:%M:%S")}
    return sources.register(staged, dest, log_path, info)


def builds() -> list[dict]:
    """Every complete OpenSIPS build in the cache, by name."""
    return [i for i in sources.recorded("opensips") if Path(i.get("binary", "")).is_file()]


def find(name: str) -> dict:
    """The build called NAME; one line naming the builds there are when none is."""
    return sources.find_named(name, builds(), "--opensips", OpensipsBuildError)


def select(name: str = "auto", version: str | None = None, tls_lib: str | None = None,
           override: bool | None = None) -> dict:
    """The build to run: by name, else the newest that matches the version
    prefix, TLS library and override asked for; one line naming what there is
    when none matches."""
    if name != "auto":
        return find(name)
    have = [i for i in builds()
            if (not version or i["version"] == version or i["version"].startswith(version + "."))
            and (not tls_lib or i["tls_lib"] == tls_lib)
            and (override is None or bool(i.get("override")) == override)]
    if not have:
        asked = ", ".join(x for x in (version and f"version {version}", tls_lib and f"tls_{tls_lib}",
                                      override is False and "without the override") if x)
        listed = ", ".join(i["name"] for i in builds()) or "none"
        raise OpensipsBuildError(f"no OpenSIPS build{' with ' + asked if asked else ''} "
                                 f"(have: {listed}); make one with `tlsharness servers build "
                                 "opensips --from-source TARBALL`")
    return max(have, key=lambda i: i.get("built", ""))
