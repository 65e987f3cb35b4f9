"""Kamailio built from a release tarball (or a source tree) into a private
prefix under the user's cache: `tlsharness servers build kamailio
--from-source kamailio-6.1.4.tar.gz` (or `make kamailio6 KAMAILIO_SOURCE=...`).

Only what `tlsharness target kamailio` loads is built: the core, the
modules tls sl ctl kex corex, and kamcmd.  One build is one folder
<cache>/servers/<name>/ with sbin/kamailio, lib/kamailio/modules/*.so,
build.log and build.json; a build that fails leaves nothing but its
one-line reason.  Upstream releases: https://www.kamailio.org/pub/kamailio/
(or `git archive` of a tag of https://github.com/kamailio/kamailio).

Debian's 6.x source package is built by `make kamailio6` without a source
(native_shim.fetch_kamailio, into build/kamailio6/); that build is listed
here too, under the name `kamailio6`.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path

from harness.builds import native
from harness.builds import sources
from harness.builds.safepath import check_name, inside

MODULES = ("tls", "sl", "ctl", "kex", "corex")
DEBIAN_BUILD = "kamailio6"          # the name of make kamailio6's Debian build


class KamailioBuildError(sources.SourceBuildError):
    """A build that cannot be done: the message is one line."""


def tree_version(top: Path) -> str:
    """VERSION.PATCHLEVEL.SUBLEVEL of src/Makefile.defs."""
    text = (top / "src" / "Makefile.defs").read_text(errors="replace")
    parts = [re.search(rf"^{k}\s*=\s*(\d+)", text, re.M) for k in ("VERSION", "PATCHLEVEL",
                                                                       "SUBLEVEL")]
    if not all(parts):
        raise KamailioBuildError("src/Makefile.defs holds no VERSION/PATCHLEVEL/SUBLEVEL: "
                                 "not a Kamailio source tree")
    return ".".join(p.group(1) for p in parts)


def _is_top(d: Path) -> bool:
    return ((d / "src" / "main.c").exists() and (d / "src" / "Makefile.defs").exists()
            and (d / "Makefile").exists())


def steps(dest: Path, stage: Path) -> list[tuple[list[str], bool]]:
    """(make arguments run at the tree's top, required).  prefix is where the
    build will live (its RUNPATH and default paths); basedir stages the install."""
    extra = " ".join(m for m in MODULES if m != "tls")
    return [(["cfg", f"prefix={dest}", "FLAVOUR=kamailio", "group_include=ktls_basic",
              f"include_modules={extra}", "skip_modules=crypto"], True),
            (["-j2", "all"], True),
            (["install-bin", "install-every-module", f"basedir={stage}"], True),
            (["-C", "utils/kamcmd"], False)]


def _make(args: list[str], top: Path, log, timeout: int = 1800) -> bool:
    print("$ make " + " ".join(args), file=log, flush=True)
    try:
        r = subprocess.run(["make", *args], cwd=str(top), stdout=log, stderr=subprocess.STDOUT,
                           timeout=timeout, preexec_fn=sources.die_with_parent)
    except subprocess.TimeoutExpired:
        raise KamailioBuildError(f"make {args[0]} took over {timeout} s") from None
    return r.returncode == 0


def binary_version(binary: Path) -> str:
    r = subprocess.run([str(binary), "-v"], capture_output=True, text=True, timeout=30)
    m = re.search(r"version:\s*kamailio\s+(\S+)", r.stdout + r.stderr)
    if r.returncode != 0 or not m:
        last = ((r.stdout + r.stderr).strip().splitlines() or ["no output"])[-1]
        raise KamailioBuildError(f"the built kamailio -v does not run: {last[:160]}")
    return m.group(1)


def _need_tools() -> None:
    missing = [t for t in ("make", "gcc", "bison", "flex") if not shutil.which(t)]
    if not Path("/usr/include/openssl/ssl.h").exists():
        missing.append("libssl-dev")
    if missing:
        raise KamailioBuildError(f"building Kamailio needs {' '.join(missing)} "
                                 f"(apt-get install {' '.join(missing)})")


def build(source: Path | None, name: str | None = None, progress=print) -> dict:
    """Build Kamailio from SOURCE; returns its build.json.  Nothing is kept
    when it fails: the work folder is removed and the reason is one line."""
    if source is None:
        raise KamailioBuildError("give --from-source TARBALL_OR_DIR (a Kamailio release "
                                 "tarball, e.g. kamailio-6.1.4.tar.gz, or a source tree); "
                                 "Debian's 6.x source package: make kamailio6")
    if name is not None:
        check_name(name, "build name")
    _need_tools()
    root, work = sources.work_folder("kamailio", KamailioBuildError)
    t0 = time.monotonic()
    dest = None
    try:
        top = sources.unpack(source.resolve(), work, _is_top, "Kamailio",
                             "Makefile, src/main.c and src/Makefile.defs", KamailioBuildError)
        version = tree_version(top)
        name = check_name(name or f"kamailio-{version}", "build name")
        dest = root / name
        if not inside(root, dest):
            raise KamailioBuildError(f"{dest} is not inside {root}: refused")
        return _build_in(top, work, dest, source, version, t0, progress)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _build_in(top: Path, work: Path, dest: Path, source: Path, version: str, t0: float,
              progress) -> dict:
    stage = work / "stage"
    log_path = work / "build.log"
    progress(f"building Kamailio {version}: core, {' '.join(MODULES)}, kamcmd "
             f"(log: {dest / 'build.log'}) ...")
    kamcmd = None
    with open(log_path, "w") as log:
        for args, required in steps(dest, stage):
            ok = _make(args, top, log)
            if not ok and required:
                raise KamailioBuildError(f"make {args[0]} failed: {sources.first_error(log.name)}")
            if ok and "utils/kamcmd" in args:
                kamcmd = top / "utils" / "kamcmd" / "kamcmd"
    staged = Path(f"{stage}{dest}")
    binary = staged / "sbin" / "kamailio"
    tls = next(iter(sorted(staged.glob("lib*/kamailio/modules/tls.so"))), None)
    if not binary.is_file() or tls is None:
        raise KamailioBuildError(f"the install left no sbin/kamailio or tls.so ({sources.first_error(log_path)})")
    absent = [m for m in MODULES if not (tls.parent / f"{m}.so").exists()]
    if absent:
        raise KamailioBuildError(f"modules not built: {' '.join(absent)}")
    if kamcmd is not None and kamcmd.is_file():
        shutil.copy2(kamcmd, staged / "sbin" / "kamcmd")
    built = binary_version(binary)      # runs from the stage: its RUNPATH is dest's
    info = {"name": dest.name, "server": "kamailio", "version": version,
            "kamailio_version": built, "binary": str(dest / "sbin" / "kamailio"),
            "modules": str(dest / tls.parent.relative_to(staged)),
            "kamcmd": str(dest / "sbin" / "kamcmd") if kamcmd else None,
            "source": source.name, "source_sha256": sources.sha256(source),
            "make": ["make " + " ".join(a) for a, _ in steps(dest, stage)],
            "seconds": round(time.monotonic() - t0, 1), "built": time.strftime("%Y-%m-%d %H:%M:%S")}
    return sources.register(staged, dest, log_path, info)


def _debian_build() -> dict | None:
    """make kamailio6's Debian build (build/kamailio6/build.json), as a build."""
    try:
        info = json.loads((native.ROOT / "build" / "kamailio6" / "build.json").read_text())
        return {"name": DEBIAN_BUILD, "server": "kamailio", "version": info["kamailio_version"],
                "kamailio_version": info["kamailio_version"], "binary": info["binary"],
                "modules": info["modules_dir"], "kamcmd": info.get("kamcmd"),
                "source": f"Debian {info.get('suite')} kamailio {info.get('version')}",
                "seconds": info.get("seconds", 0)}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def builds() -> list[dict]:
    """Every complete Kamailio build: the cache's, then make kamailio6's."""
    out = sources.recorded("kamailio")
    deb = _debian_build()
    if deb and not any(i.get("name") == DEBIAN_BUILD for i in out):
        out.append(deb)
    return [i for i in out if Path(i.get("binary", "")).is_file()
            and Path(i.get("modules", ""), "tls.so").is_file()]


def find(name: str) -> dict:
    """The build called NAME; one line naming the builds there are when none is."""
    return sources.find_named(name, builds(), "--kamailio-build", KamailioBuildError,
                              "; make one with `tlsharness servers build kamailio "
                              "--from-source TARBALL`")
