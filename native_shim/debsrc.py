"""Debian source packages from any suite of this machine's mirror: a private
apt (state under build/apt/, never the system's) that reads deb-src entries,
the newest version of a package in the first suite that has one, and its
download (checked against the .dsc) unpacked with Debian's patches.  Used by
the Kamailio build and the library source builds."""
from __future__ import annotations

import functools
import hashlib
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path

from native_shim.fetchbase import APT, FetchError, apt_entries, debian_mirror, private_apt, release_codename


def tail(text: str, n: int = 200) -> str:
    """The line of a tool's output that says what went wrong: a compiler's first
    `error:` or apt's first `E:`, else the last line that looks like an error,
    else the last line."""
    lines = [l.strip() for l in text.strip().splitlines() if l.strip()]
    for pattern, pick in ((r"\berror:|^E:", 0), (r"error|No such|not found|cannot", -1)):
        hits = [l for l in lines if re.search(pattern, l, re.I)]
        if hits:
            return hits[pick][-n:]
    return lines[-1][-n:] if lines else ""


# ------------------------------------------------------------ private apt (deb-src)

# suites that have no -updates and -security beside them: unstable, and
# experimental (whose Sources index is read the same way: it lists only the
# packages uploaded there, each newer than sid's)
ROLLING = ("sid", "unstable", "experimental", "rc-buggy")


def _apt_src(suite: str) -> list[str]:
    """apt-get with fetch.py's private state directory for `suite`, reading the
    deb-src entries of that suite (and its -updates and -security, where they
    exist) from this machine's mirrors."""
    cmd = private_apt(suite)           # state dirs, main mirror and keyring
    uri, key = debian_mirror()
    rolling = suite in ROLLING           # no -updates or -security suites of their own
    suites = [suite] if rolling else [suite, f"{suite}-updates"]
    lines = [f"deb-src [signed-by={key}] {uri} {s} main\n" for s in suites]
    if not rolling:
        codename = release_codename()
        for u, ss, k in apt_entries():
            if f"{codename}-security" in ss:
                lines.append(f"deb-src [signed-by={k or key}] {u.rstrip('/')} {suite}-security main\n")
                break
    sources = APT / suite / "etc" / "sources-src.list"
    sources.write_text("".join(lines))
    # later -o options win: this list replaces the binary one private_apt() wrote
    return cmd + ["-o", f"Dir::Etc::SourceList={sources}", "-o", "APT::Sandbox::User=root"]


def _vercmp(a: str, b: str) -> int:
    if a == b:
        return 0
    r = subprocess.run(["dpkg", "--compare-versions", a, "lt", b])
    return -1 if r.returncode == 0 else 1


def find_source(package: str, suites, major: str = "", label: str = "",
                quiet: bool = False) -> tuple[str, str, list[str]]:
    """(suite, version, apt command) of the newest source of `package` whose
    version starts with `major`, in the first of `suites` that has one."""
    suite, versions, apt = find_sources(package, suites, major, label, quiet)
    return suite, versions[0], apt


def find_sources(package: str, suites, major: str = "", label: str = "",
                 quiet: bool = False) -> tuple[str, list[str], list[str]]:
    """(suite, versions newest first, apt command): every source of `package`
    whose version starts with `major`, in the first of `suites` that has one
    (a mirror may lack the newest one's files: the caller tries the next)."""
    seen = []
    for suite in suites:
        apt = _apt_src(suite)
        r = subprocess.run(apt + ["update"], capture_output=True, text=True, timeout=300)
        upd_err = tail(r.stderr) if r.returncode != 0 else ""
        q = subprocess.run(["apt-cache", *apt[1:], "showsrc", "--only-source", package],
                           capture_output=True, text=True, timeout=120)
        versions = sorted({m.group(1) for m in re.finditer(r"^Version:\s*(\S+)", q.stdout, re.M)},
                          key=functools.cmp_to_key(_vercmp))
        seen.append(f"{suite}: {', '.join(versions) or (upd_err or 'none')}")
        fit = [v for v in versions if v.split(":")[-1].startswith(major)]
        if fit:
            if not quiet:
                print(f"{label or package}: {package} {fit[-1]} from {suite}", flush=True)
            return suite, fit[::-1], apt
    raise FetchError(f"no {package} {major + 'x ' if major else ''}source package on the mirror "
                     f"({'; '.join(seen)})")


# ------------------------------------------------------------ download, unpack

def _sha256_field(text: str) -> dict[str, str]:
    """name -> sha256 from a Checksums-Sha256 field (a .dsc or an index record)."""
    files, inside = {}, False
    for line in text.splitlines():
        if line.startswith("Checksums-Sha256:"):
            inside = True
            continue
        if inside:
            if not line.startswith(" "):
                break
            parts = line.split()
            if len(parts) == 3:
                files[parts[2]] = parts[0]
    return files


def _dsc_files(dsc: Path) -> dict[str, str]:
    """name -> sha256 from the .dsc (itself checked by apt against the signed index)."""
    files = _sha256_field(dsc.read_text(errors="replace"))
    if not files:
        raise FetchError(f"{dsc.name}: no Checksums-Sha256")
    return files


def _sha256(p: Path) -> str:
    h = hashlib.sha256()
    with p.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _index_files(package: str, version: str, apt: list[str], src: Path,
                 apt_error: str) -> tuple[dict[str, str], str]:
    """Without a .dsc: name -> sha256 from the suite's signed Sources index,
    and each file apt did not get downloaded from the mirror's pool by hand
    (checked by the caller against those sums).  (files, the record)."""
    q = subprocess.run(["apt-cache", *apt[1:], "showsrc", "--only-source", package],
                       capture_output=True, text=True, timeout=120)
    record = next((r for r in q.stdout.split("\n\n")
                   if re.search(rf"^Version:\s*{re.escape(version)}$", r, re.M)), "")
    files = {n: d for n, d in _sha256_field(record).items() if not n.endswith(".dsc")}
    where = re.search(r"^Directory:\s*(\S+)", record, re.M)
    if not files or not where:
        raise FetchError(f"apt-get source {package}={version} failed: {apt_error}")
    base = debian_mirror()[0].rstrip("/") + "/" + where.group(1)
    for name in files:
        if not (src / name).exists():
            try:
                with urllib.request.urlopen(f"{base}/{name}", timeout=120) as r, \
                        open(src / name, "wb") as out:
                    shutil.copyfileobj(r, out)
            except OSError:
                (src / name).unlink(missing_ok=True)      # absent: said by the caller
    return files, record


def unpack(package: str, version: str, apt: list[str], src: Path) -> tuple[Path, str]:
    """Download the source package into `src` and unpack it with Debian's
    patches; (tree, how) where how says how it was unpacked."""
    src.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(apt + ["source", "--download-only", f"{package}={version}"],
                       capture_output=True, text=True, timeout=900, cwd=str(src))
    noepoch = version.split(":")[-1]
    dsc = src / f"{package}_{noepoch}.dsc"
    if dsc.exists():
        files, fmt_text, listed = _dsc_files(dsc), dsc.read_text(errors="replace"), dsc.name
    else:       # some mirrors lack a version's .dsc: the signed index lists the same files
        files, fmt_text = _index_files(package, version, apt, src, tail(r.stderr))
        listed = "the suite's Sources index"
    absent = []
    for name, digest in files.items():
        p = src / name
        if not p.exists():
            absent.append(name)
        elif _sha256(p) != digest:
            raise FetchError(f"{name}: checksum differs from {listed}")
    # files the mirror lacks: the upstream tarball's signature (.asc) is not
    # needed; without the Debian tarball the upstream release is built as it is
    upstream = noepoch.rsplit("-", 1)[0]
    tree = src / f"{package}-{upstream}"
    if dsc.exists() and not absent:
        r = subprocess.run(["dpkg-source", "-x", dsc.name, tree.name], capture_output=True,
                           text=True, timeout=600, cwd=str(src))
        if r.returncode != 0:
            raise FetchError(f"dpkg-source -x {dsc.name} failed: {tail(r.stderr)}")
        return tree, "dpkg-source -x"
    # as dpkg-source does for 3.0 (quilt): upstream tarball, debian/ tarball, patch series
    fmt = re.search(r"^Format:\s*(.+)$", fmt_text, re.M)
    if not fmt or fmt.group(1).strip() != "3.0 (quilt)":
        raise FetchError(f"{listed}: format {fmt.group(1) if fmt else '?'} and "
                         f"{', '.join(absent)} missing: cannot unpack")
    orig = [n for n in files if re.search(r"\.orig\.tar\.[a-z0-9]+$", n)]
    deb = [n for n in files if re.search(r"\.debian\.tar\.[a-z0-9]+$", n)]
    if len(orig) != 1 or len(deb) != 1 or any(".orig-" in n for n in files):
        raise FetchError(f"{listed}: unexpected file set {', '.join(files)}")
    if orig[0] in absent:
        raise FetchError(f"{orig[0]} is not on the mirror: cannot unpack {package} {version}")
    tree.mkdir()
    subprocess.run(["tar", "-xf", str(src / orig[0]), "-C", str(tree), "--strip-components=1"],
                   check=True, capture_output=True, timeout=600)
    if deb[0] in absent:                # the upstream release as it is, and said so
        return tree, f"upstream tarball only ({deb[0]} not on the mirror: no Debian patches)"
    subprocess.run(["tar", "-xf", str(src / deb[0]), "-C", str(tree)],
                   check=True, capture_output=True, timeout=600)
    series = tree / "debian" / "patches" / "series"
    patches = [l.split()[0] for l in series.read_text().splitlines()
               if l.strip() and not l.lstrip().startswith("#")] if series.exists() else []
    for p in patches:
        r = subprocess.run(["patch", "-p1", "-s", "-f", "--no-backup-if-mismatch", "-i",
                            str(tree / "debian" / "patches" / p)],
                           capture_output=True, text=True, timeout=120, cwd=str(tree))
        if r.returncode != 0:
            raise FetchError(f"debian patch {p} does not apply: {tail(r.stdout + r.stderr)}")
    return tree, f"tar + {len(patches)} debian patches ({', '.join(absent)} not on the mirror)"


def main(argv=None) -> int:
    """python -m native_shim.debsrc PACKAGE --major M --suites a,b --into DIR:
    the newest fitting source unpacked; prints `TREE<TAB>VERSION<TAB>SUITE`,
    or one line on stderr and exit 3."""
    import argparse
    import sys
    p = argparse.ArgumentParser(prog="python -m native_shim.debsrc")
    p.add_argument("package")
    p.add_argument("--major", default="")
    p.add_argument("--suites", required=True)
    p.add_argument("--into", required=True)
    a = p.parse_args(argv)
    try:
        suite, versions, apt = find_sources(a.package, a.suites.split(","), a.major, quiet=True)
        last = None
        for version in versions:                 # a mirror may lack the newest one's files
            try:
                tree, _ = unpack(a.package, version, apt, Path(a.into))
                print(f"{tree}\t{version}\t{suite}")
                return 0
            except FetchError as e:
                last = e
        raise last or FetchError(f"no {a.package} source could be unpacked")
    except (FetchError, OSError, subprocess.SubprocessError) as e:
        print(f"{a.package}: {e}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    raise SystemExit(main())
