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
import shutil
import subprocess
import sys
from pathlib import Path

from native_shim.fetchbase import (FetchError, prefix_of, private_apt, private_apt_source,
                                  release_codename, variants)


def build_openssl_debug(v: dict, quiet: bool = False) -> Path:
    """The installed OpenSSL's Debian source package, built with symbols."""
    dest = prefix_of(v["name"])
    if (dest.parent / ".done").exists():
        return dest
    r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "libssl3"], capture_output=True, text=True)
    version = r.stdout.strip()
    if not version:
        raise FetchError("libssl3 is not installed: no version to build")
    apt = private_apt_source(release_codename())
    src = dest.parent / "src"
    src.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(apt + ["update"], capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise FetchError(f"apt-get update (sources) failed: {r.stderr.strip()[-200:]}")
    r = subprocess.run(apt + ["source", "--download-only", f"openssl={version}"], capture_output=True,
                       text=True, timeout=600, cwd=str(src))
    upstream = version.split("-")[0]
    orig = src / f"openssl_{upstream}.orig.tar.gz"
    tree = src / "tree"
    label = f"openssl_{version}_source-debug"
    if r.returncode == 0 and not tree.exists():
        dsc = next(src.glob("openssl_*.dsc"))
        subprocess.run(["dpkg-source", "-x", str(dsc), str(tree)], check=True, capture_output=True,
                       timeout=600)
    elif r.returncode != 0 and orig.exists() and not tree.exists():
        # the mirror may no longer carry this version's Debian patches: build the same
        # upstream release without them, and say so
        tree.mkdir()
        subprocess.run(["tar", "-xzf", str(orig), "-C", str(tree), "--strip-components=1"],
                       check=True, timeout=600)
        label = f"openssl_{upstream}_upstream-debug (Debian patches unavailable)"
    elif r.returncode != 0 and not tree.exists():
        raise FetchError(f"apt-get source openssl={version} failed: {r.stderr.strip()[-200:]}")
    steps = [["./Configure", f"--prefix={dest / 'usr'}", "--libdir=lib/x86_64-linux-gnu",
              "shared", "no-tests", "-g", "-O1", "-fno-omit-frame-pointer"],
             ["make", "-j2", "build_libs"], ["make", "install_dev"]]
    for step in steps:
        if not quiet:
            print(f"openssl debug build: {' '.join(step[:3])}", flush=True)
        r = subprocess.run(step, cwd=str(tree), capture_output=True, text=True, timeout=3600)
        if r.returncode != 0:
            raise FetchError(f"{' '.join(step[:2])} failed: {r.stderr.strip()[-300:]}")
    (dest.parent / "debs.txt").write_text(label + "\n")
    (dest.parent / ".done").touch()
    return dest


def fetch(v: dict, quiet: bool = False) -> Path:
    if v.get("build") == "openssl-debug":
        return build_openssl_debug(v, quiet)
    if v.get("source") and v.get("build"):       # a source recipe: native_shim.srcbuild
        from native_shim import srcbuild
        return srcbuild.build(v, quiet)
    dest = prefix_of(v["name"])
    if (dest.parent / ".done").exists():
        return dest
    for tool in ("apt-get", "dpkg"):
        if not shutil.which(tool):
            raise FetchError(f"{tool} not found: variants come from Debian packages")
    apt = private_apt(v["suite"])
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
    ap.add_argument("--optional", action="store_true", help="also the optional ones (debug builds)")
    a = ap.parse_args(argv)
    rc = 0
    for v in variants():
        if a.only and v["name"] != a.only:
            continue
        if v.get("optional") and not (a.optional or a.only):
            continue
        try:
            fetch(v, a.quiet)
        except (FetchError, subprocess.SubprocessError, OSError) as e:
            print(f"skip  {v['name']}: {e}", file=sys.stderr)
            rc = 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
