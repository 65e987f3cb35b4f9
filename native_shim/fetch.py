"""Fetch library builds of other Debian releases into private prefixes.

    python -m native_shim.fetch [--only NAME]

For each variant in native_shim/variants.toml: apt (with a private state
directory, so the system's package lists are untouched) downloads the
packages of the named suite from the mirror this machine's own apt sources
use, and `dpkg -x` extracts them into build/libs/<name>/.  Nothing is
installed system-wide.  Idempotent: an extracted prefix is kept.
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LIBS = ROOT / "build" / "libs"
APT = ROOT / "build" / "apt"


class FetchError(RuntimeError):
    pass


def variants() -> list[dict]:
    return tomllib.loads((HERE / "variants.toml").read_text())["variant"]


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")


def prefix_of(name: str) -> Path:
    return LIBS / slug(name) / "root"


def _release_codename() -> str:
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("VERSION_CODENAME="):
            return line.split("=", 1)[1].strip().strip('"')
    raise FetchError("cannot tell this machine's Debian release (/etc/os-release)")


def debian_mirror() -> tuple[str, str]:
    """(URI, keyring) of the main Debian archive this machine's apt uses."""
    codename = _release_codename()
    entries = []
    d = Path("/etc/apt/sources.list.d")
    for f in sorted(d.glob("*.sources")) if d.exists() else []:
        for stanza in f.read_text().split("\n\n"):
            fields = {}
            for line in stanza.splitlines():
                if ":" in line and not line.lstrip().startswith("#"):
                    k, v = line.split(":", 1)
                    fields[k.strip().lower()] = v.strip()
            if fields.get("types", "").split() and "deb" in fields["types"].split():
                for uri in fields.get("uris", "").split():
                    entries.append((uri, fields.get("suites", "").split(), fields.get("signed-by", "")))
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists():
        for line in legacy.read_text().splitlines():
            m = re.match(r"\s*deb\s+(\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line)
            if m:
                opts = m.group(1) or ""
                key = re.search(r"signed-by=(\S+?)[\]\s]", opts + " ")
                entries.append((m.group(2), [m.group(3)], key.group(1) if key else ""))
    for uri, suites, key in entries:
        if codename in suites:          # the main archive: the release's own suite
            return uri.rstrip("/"), key or "/usr/share/keyrings/debian-archive-keyring.gpg"
    raise FetchError(f"no apt source for {codename} found in /etc/apt: cannot derive a mirror")


def _apt(suite: str) -> list[str]:
    uri, key = debian_mirror()
    base = APT / suite
    (base / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (base / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    (base / "etc").mkdir(parents=True, exist_ok=True)
    (base / "status").touch()
    sources = base / "etc" / "sources.list"
    sources.write_text("".join(f"deb [signed-by={key}] {uri} {s} main\n"
                               for s in (suite, f"{suite}-updates")))
    return ["apt-get", "-q", "-o", f"Dir::Etc::SourceList={sources}",
            "-o", "Dir::Etc::SourceParts=/nonexistent", "-o", f"Dir::State::Lists={base / 'lists'}",
            "-o", f"Dir::State::status={base / 'status'}", "-o", f"Dir::Cache::Archives={base / 'archives'}",
            "-o", "APT::Get::List-Cleanup=0", "-o", "Debug::NoLocking=1"]


def fetch(v: dict, quiet: bool = False) -> Path:
    dest = prefix_of(v["name"])
    if (dest.parent / ".done").exists():
        return dest
    for tool in ("apt-get", "dpkg"):
        if not shutil.which(tool):
            raise FetchError(f"{tool} not found: variants come from Debian packages")
    apt = _apt(v["suite"])
    r = subprocess.run(apt + ["update"], capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise FetchError(f"apt-get update for {v['suite']} failed: {r.stderr.strip()[-200:]}")
    dl = dest.parent / "debs"
    dl.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(apt + ["download", *v["packages"]], capture_output=True, text=True,
                       timeout=300, cwd=str(dl))
    if r.returncode != 0:
        raise FetchError(f"apt-get download {' '.join(v['packages'])} ({v['suite']}) failed: "
                         f"{r.stderr.strip()[-200:]}")
    dest.mkdir(parents=True, exist_ok=True)
    for deb in sorted(dl.glob("*.deb")):
        subprocess.run(["dpkg", "-x", str(deb), str(dest)], check=True, timeout=120)
    (dest.parent / "debs.txt").write_text("\n".join(p.name for p in sorted(dl.glob("*.deb"))) + "\n")
    (dest.parent / ".done").touch()
    if not quiet:
        print(f"fetched {v['name']}: {', '.join(p.name for p in sorted(dl.glob('*.deb')))}")
    return dest


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="fetch library builds of other Debian releases")
    ap.add_argument("--only")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)
    rc = 0
    for v in variants():
        if a.only and v["name"] != a.only:
            continue
        try:
            fetch(v, a.quiet)
        except (FetchError, subprocess.SubprocessError, OSError) as e:
            print(f"skip  {v['name']}: {e}", file=sys.stderr)
            rc = 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
