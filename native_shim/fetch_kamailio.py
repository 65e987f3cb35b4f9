"""Build Kamailio 6.x from Debian's source package into a private prefix.

    python -m native_shim.fetch_kamailio [--force]        (make kamailio6)

apt, with a private state directory (native_shim.fetch), reads the source
indexes of the newer Debian suites from the mirror this machine's own apt
sources use: trixie (with trixie-updates and trixie-security), else forky,
else sid; the newest 6.x version of the first suite that has one is
downloaded and unpacked with Debian's patches into build/kamailio6/src/.
Only the core, kamcmd and the modules `tlsharness target kamailio` loads
(tls sl ctl kex corex) are built, into build/kamailio6/root/; nothing is
installed system-wide except missing build tools (bison, flex, ...), with
apt-get, as root.  build/kamailio6/build.json says what was built and how:

    tlsharness target kamailio --kamailio-bin build/kamailio6/root/sbin/kamailio \\
        --kamailio-modules build/kamailio6/root/lib/kamailio/modules

Idempotent: a finished build (.done, holding the hash of this file) is kept
until this file changes or --force.  A failure is one line,
`kamailio6: not built: <reason>`, exit status 3, and no .done.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from native_shim import debsrc
from native_shim.debsrc import tail
from native_shim.fetchbase import ROOT, FetchError

BASE = ROOT / "build" / "kamailio6"
SRC = BASE / "src"
PREFIX = BASE / "root"
LOGS = BASE / "logs"
DONE = BASE / ".done"
INFO = BASE / "build.json"
PACKAGE = "kamailio"
SUITES = ("trixie", "forky", "sid")         # in order of preference: the first with a 6.x wins
MAJOR = "6."
MODULES = ("tls", "sl", "ctl", "kex", "corex")   # sl replies without tm (tm is optional for it)
# what the build runs -> the Debian package providing it (only these are installed)
TOOLS = {"make": "make", "gcc": "gcc", "bison": "bison", "flex": "flex",
         "pkg-config": "pkg-config", "patch": "patch", "dpkg-source": "dpkg-dev", "xz": "xz-utils"}
HEADERS = {"libssl-dev": "/usr/include/openssl/ssl.h"}          # tls module
OPTIONAL = {"libreadline-dev": "/usr/include/readline/readline.h"}  # kamcmd line editing, if present


def recipe() -> str:
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]


def _rel(p: Path) -> str:
    try:
        return str(p.relative_to(ROOT))
    except ValueError:
        return str(p)


# ---------------------------------------------------------------- build tools

def ensure_build_deps(quiet: bool) -> list[str]:
    """Install the missing build tools (as root); return what was installed."""
    missing = sorted({pkg for tool, pkg in TOOLS.items() if not shutil.which(tool)}
                     | {pkg for pkg, hdr in HEADERS.items() if not Path(hdr).exists()})
    if not missing:
        return []
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]
    if os.geteuid() != 0:
        raise FetchError(f"missing build tools {' '.join(missing)}: run `sudo {' '.join(cmd)}`")
    if not quiet:
        print(f"kamailio6: installing {' '.join(missing)}", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    if r.returncode != 0:       # stale package lists: refresh once
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, text=True, timeout=300, env=env)
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    if r.returncode != 0:
        raise FetchError(f"{' '.join(cmd)} failed: {tail(r.stderr)}")
    return missing


# ------------------------------------------------------------------ build

def build_steps() -> list[tuple[str, list[str], bool]]:
    """(name, command run in the source tree, required)."""
    extra = [m for m in MODULES if m != "tls"]
    return [
        # ktls_basic = crypto + tls; crypto is not needed
        ("cfg", ["make", "cfg", f"prefix={PREFIX}", "FLAVOUR=kamailio", "group_include=ktls_basic",
                 f"include_modules={' '.join(extra)}", "skip_modules=crypto"], True),
        ("all", ["make", "-j2", "all"], True),
        ("install", ["make", "install-bin", "install-every-module"], True),
        ("kamcmd", ["make", "-C", "utils/kamcmd"], False),
    ]


def run_step(name: str, cmd: list[str], tree: Path, quiet: bool) -> None:
    if not quiet:
        print(f"kamailio6: {' '.join(cmd)}", flush=True)
    LOGS.mkdir(parents=True, exist_ok=True)
    log = LOGS / f"{name}.log"
    with log.open("w") as f:
        r = subprocess.run(cmd, cwd=str(tree), stdout=f, stderr=subprocess.STDOUT, timeout=3600)
    if r.returncode != 0:
        raise FetchError(f"{' '.join(cmd[:3])} failed ({_rel(log)}): {tail(log.read_text(errors='replace'))}")


def kamailio_version(binary: Path) -> str:
    r = subprocess.run([str(binary), "-v"], capture_output=True, text=True, timeout=30)
    m = re.search(r"version:\s*kamailio\s+(\S+)", r.stdout + r.stderr)
    if r.returncode != 0 or not m:
        raise FetchError(f"{_rel(binary)} -v does not run: {tail(r.stdout + r.stderr)}")
    return m.group(1)


def build(quiet: bool = False) -> dict:
    t0 = time.monotonic()
    if BASE.exists():
        shutil.rmtree(BASE)     # a rebuild starts clean: no stale tree, prefix or .done
    BASE.mkdir(parents=True)
    for tool in ("apt-get", "apt-cache", "dpkg"):
        if not shutil.which(tool):
            raise FetchError(f"{tool} not found: the source comes from Debian's archive")
    installed = ensure_build_deps(quiet)
    suite, version, apt = debsrc.find_source(PACKAGE, SUITES, MAJOR, "kamailio6", quiet)
    tree, how = debsrc.unpack(PACKAGE, version, apt, SRC)
    kamcmd = None
    steps = build_steps()
    for name, cmd, required in steps:
        try:
            run_step(name, cmd, tree, quiet)
            if name == "kamcmd":
                kamcmd = PREFIX / "sbin" / "kamcmd"
                shutil.copy2(tree / "utils" / "kamcmd" / "kamcmd", kamcmd)
        except (FetchError, subprocess.SubprocessError, OSError) as e:
            if required:
                raise
            kamcmd = None
            if not quiet:
                print(f"kamailio6: skipped {name}: {e}", flush=True)
    binary = PREFIX / "sbin" / "kamailio"
    modules = PREFIX / "lib" / "kamailio" / "modules"
    absent = [m for m in MODULES if not (modules / f"{m}.so").exists()]
    if not binary.exists() or absent:
        raise FetchError(f"install left {'no ' + _rel(binary) if not binary.exists() else ''}"
                         f"{' no modules ' + ' '.join(absent) if absent else ''} in {_rel(PREFIX)}")
    built = kamailio_version(binary)
    if not built.startswith(MAJOR):
        raise FetchError(f"{_rel(binary)} says version {built}, not {MAJOR}x")
    info = {
        "version": version, "kamailio_version": built, "suite": suite,
        "binary": str(binary), "modules_dir": str(modules), "modules": list(MODULES),
        "kamcmd": str(kamcmd) if kamcmd else None,
        "source": str(tree), "unpacked_with": how,
        "configure": " ".join(steps[0][1]),
        "make": [" ".join(c) for n, c, _ in steps[1:]],
        "apt_installed": installed,
        "seconds": round(time.monotonic() - t0, 1),
        "recipe": recipe(),
        "usage": f"tlsharness target kamailio --kamailio-bin {_rel(binary)} "
                 f"--kamailio-modules {_rel(modules)}",
    }
    INFO.write_text(json.dumps(info, indent=2) + "\n")
    DONE.write_text(recipe() + "\n")        # last: only a finished build has it
    return info


def existing() -> dict | None:
    try:
        if DONE.read_text().strip() != recipe():
            return None
        info = json.loads(INFO.read_text())
        if Path(info["binary"]).exists() and Path(info["modules_dir"], "tls.so").exists():
            return info
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def summary(info: dict, cached: bool) -> str:
    return (f"kamailio6: Kamailio {info['kamailio_version']} ({PACKAGE} {info['version']}, "
            f"{info['suite']}) " + (f"already built ({_rel(DONE)}; --force rebuilds)\n" if cached
                                    else f"built in {info['seconds']} s\n") +
            f"  binary   {info['binary']}\n  modules  {info['modules_dir']}\n"
            f"  kamcmd   {info['kamcmd'] or '(not built)'}\n"
            f"  use:     {info['usage']}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="build Kamailio 6.x from Debian's source package "
                                             "into build/kamailio6/root")
    ap.add_argument("--force", action="store_true", help="rebuild even if a finished build exists")
    ap.add_argument("--quiet", action="store_true", help="print only the result")
    a = ap.parse_args(argv)
    try:
        info = None if a.force else existing()
        cached = info is not None
        if info is None:
            info = build(a.quiet)
    except BaseException as e:          # one line, never a traceback
        if isinstance(e, SystemExit):
            raise
        try:
            DONE.unlink()
        except OSError:
            pass
        reason = "interrupted" if isinstance(e, KeyboardInterrupt) else \
            (" ".join(str(e).split()) or type(e).__name__)
        print(f"kamailio6: not built: {reason}", file=sys.stderr)
        return 3
    print(summary(info, cached))
    return 0


if __name__ == "__main__":
    sys.exit(main())
