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
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from native_shim.fetch import (APT, ROOT, FetchError, _apt, _apt_entries, _release_codename,
                               debian_mirror)

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


def _tail(text: str, n: int = 200) -> str:
    """The line of a tool's output that says what went wrong: a compiler's first
    `error:` or apt's first `E:`, else the last line that looks like an error,
    else the last line."""
    lines = [l.strip() for l in text.strip().splitlines() if l.strip()]
    for pattern, pick in ((r"\berror:|^E:", 0), (r"error|No such|not found|cannot", -1)):
        hits = [l for l in lines if re.search(pattern, l, re.I)]
        if hits:
            return hits[pick][-n:]
    return lines[-1][-n:] if lines else ""


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
        raise FetchError(f"{' '.join(cmd)} failed: {_tail(r.stderr)}")
    return missing


# ------------------------------------------------------------ private apt (deb-src)

def _apt_src(suite: str) -> list[str]:
    """apt-get with fetch.py's private state directory for `suite`, reading the
    deb-src entries of that suite (and its -updates and -security, where they
    exist) from this machine's mirrors."""
    cmd = _apt(suite)                   # state dirs, main mirror and keyring
    uri, key = debian_mirror()
    suites = [suite] if suite == "sid" else [suite, f"{suite}-updates"]
    lines = [f"deb-src [signed-by={key}] {uri} {s} main\n" for s in suites]
    if suite != "sid":
        codename = _release_codename()
        for u, ss, k in _apt_entries():
            if f"{codename}-security" in ss:
                lines.append(f"deb-src [signed-by={k or key}] {u.rstrip('/')} {suite}-security main\n")
                break
    sources = APT / suite / "etc" / "sources-src.list"
    sources.write_text("".join(lines))
    # later -o options win: this list replaces the binary one _apt() wrote
    return cmd + ["-o", f"Dir::Etc::SourceList={sources}", "-o", "APT::Sandbox::User=root"]


def _vercmp(a: str, b: str) -> int:
    if a == b:
        return 0
    r = subprocess.run(["dpkg", "--compare-versions", a, "lt", b])
    return -1 if r.returncode == 0 else 1


def find_source(quiet: bool) -> tuple[str, str, list[str]]:
    """(suite, version, apt command) of the newest 6.x source of the first suite
    that has one."""
    seen = []
    for suite in SUITES:
        apt = _apt_src(suite)
        r = subprocess.run(apt + ["update"], capture_output=True, text=True, timeout=300)
        upd_err = _tail(r.stderr) if r.returncode != 0 else ""
        q = subprocess.run(["apt-cache", *apt[1:], "showsrc", "--only-source", PACKAGE],
                           capture_output=True, text=True, timeout=120)
        versions = sorted({m.group(1) for m in re.finditer(r"^Version:\s*(\S+)", q.stdout, re.M)},
                          key=functools.cmp_to_key(_vercmp))
        seen.append(f"{suite}: {', '.join(versions) or (upd_err or 'none')}")
        six = [v for v in versions if v.split(":")[-1].startswith(MAJOR)]
        if six:
            if not quiet:
                print(f"kamailio6: {PACKAGE} {six[-1]} from {suite}", flush=True)
            return suite, six[-1], apt
    raise FetchError(f"no {PACKAGE} {MAJOR}x source package on the mirror ({'; '.join(seen)})")


# ------------------------------------------------------------ download, unpack

def _dsc_files(dsc: Path) -> dict[str, str]:
    """name -> sha256 from the .dsc (itself checked by apt against the signed index)."""
    files, inside = {}, False
    for line in dsc.read_text(errors="replace").splitlines():
        if line.startswith("Checksums-Sha256:"):
            inside = True
            continue
        if inside:
            if not line.startswith(" "):
                break
            parts = line.split()
            if len(parts) == 3:
                files[parts[2]] = parts[0]
    if not files:
        raise FetchError(f"{dsc.name}: no Checksums-Sha256")
    return files


def _sha256(p: Path) -> str:
    h = hashlib.sha256()
    with p.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def unpack(version: str, apt: list[str]) -> tuple[Path, str]:
    """Download the source package into SRC and unpack it with Debian's patches;
    (tree, how) where how says how it was unpacked."""
    SRC.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(apt + ["source", "--download-only", f"{PACKAGE}={version}"],
                       capture_output=True, text=True, timeout=900, cwd=str(SRC))
    noepoch = version.split(":")[-1]
    dsc = SRC / f"{PACKAGE}_{noepoch}.dsc"
    if not dsc.exists():
        raise FetchError(f"apt-get source {PACKAGE}={version} failed: {_tail(r.stderr)}")
    files = _dsc_files(dsc)
    absent = []
    for name, digest in files.items():
        p = SRC / name
        if not p.exists():
            absent.append(name)
        elif _sha256(p) != digest:
            raise FetchError(f"{name}: checksum differs from {dsc.name}")
    # the upstream tarball's detached signature (.asc) is not needed to unpack,
    # and some mirrors lack it: apt then fails, with everything else downloaded
    if [a for a in absent if not a.endswith(".asc")]:
        raise FetchError(f"apt-get source {PACKAGE}={version} failed: {_tail(r.stderr)}")
    upstream = noepoch.rsplit("-", 1)[0]
    tree = SRC / f"{PACKAGE}-{upstream}"
    if not absent:
        r = subprocess.run(["dpkg-source", "-x", dsc.name, tree.name], capture_output=True,
                           text=True, timeout=600, cwd=str(SRC))
        if r.returncode != 0:
            raise FetchError(f"dpkg-source -x {dsc.name} failed: {_tail(r.stderr)}")
        return tree, "dpkg-source -x"
    # as dpkg-source does for 3.0 (quilt): upstream tarball, debian/ tarball, patch series
    fmt = re.search(r"^Format:\s*(.+)$", dsc.read_text(errors="replace"), re.M)
    if not fmt or fmt.group(1).strip() != "3.0 (quilt)":
        raise FetchError(f"{dsc.name}: format {fmt.group(1) if fmt else '?'} and "
                         f"{', '.join(absent)} missing: cannot unpack")
    orig = [n for n in files if re.search(r"\.orig\.tar\.[a-z0-9]+$", n)]
    deb = [n for n in files if re.search(r"\.debian\.tar\.[a-z0-9]+$", n)]
    if len(orig) != 1 or len(deb) != 1 or any(".orig-" in n for n in files):
        raise FetchError(f"{dsc.name}: unexpected file set {', '.join(files)}")
    tree.mkdir()
    for args in (["tar", "-xf", str(SRC / orig[0]), "-C", str(tree), "--strip-components=1"],
                 ["tar", "-xf", str(SRC / deb[0]), "-C", str(tree)]):
        subprocess.run(args, check=True, capture_output=True, timeout=600)
    series = tree / "debian" / "patches" / "series"
    patches = [l.split()[0] for l in series.read_text().splitlines()
               if l.strip() and not l.lstrip().startswith("#")] if series.exists() else []
    for p in patches:
        r = subprocess.run(["patch", "-p1", "-s", "-f", "--no-backup-if-mismatch", "-i",
                            str(tree / "debian" / "patches" / p)],
                           capture_output=True, text=True, timeout=120, cwd=str(tree))
        if r.returncode != 0:
            raise FetchError(f"debian patch {p} does not apply: {_tail(r.stdout + r.stderr)}")
    return tree, f"tar + {len(patches)} debian patches ({', '.join(absent)} not on the mirror)"


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
        raise FetchError(f"{' '.join(cmd[:3])} failed ({_rel(log)}): {_tail(log.read_text(errors='replace'))}")


def kamailio_version(binary: Path) -> str:
    r = subprocess.run([str(binary), "-v"], capture_output=True, text=True, timeout=30)
    m = re.search(r"version:\s*kamailio\s+(\S+)", r.stdout + r.stderr)
    if r.returncode != 0 or not m:
        raise FetchError(f"{_rel(binary)} -v does not run: {_tail(r.stdout + r.stderr)}")
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
    suite, version, apt = find_source(quiet)
    tree, how = unpack(version, apt)
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
