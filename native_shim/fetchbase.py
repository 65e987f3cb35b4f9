"""What the fetchers of other people's software share (native_shim.fetch,
debsrc, srcbuild, fetch_kamailio): the variant list, where the prefixes
live, the error they raise, and a private apt (state under build/apt/,
never the system's) pointed at the mirror this machine's own apt uses."""
from __future__ import annotations

import re
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


def release_codename() -> str:
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("VERSION_CODENAME="):
            return line.split("=", 1)[1].strip().strip('"')
    raise FetchError("cannot tell this machine's Debian release (/etc/os-release)")


def debian_mirror() -> tuple[str, str]:
    """(URI, keyring) of the main Debian archive this machine's apt uses."""
    codename = release_codename()
    for uri, suites, key in apt_entries():
        if codename in suites:          # the main archive: the release's own suite
            return uri.rstrip("/"), key or "/usr/share/keyrings/debian-archive-keyring.gpg"
    raise FetchError(f"no apt source for {codename} found in /etc/apt: cannot derive a mirror")


def apt_entries() -> list[tuple[str, list[str], str]]:
    """(URI, suites, keyring) of every deb entry of this machine's apt sources."""
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
    return entries


def private_apt(suite: str) -> list[str]:
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


def private_apt_source(codename: str) -> list[str]:
    """apt with deb-src entries for this machine's own release (all its suites,
    security included), private state."""
    base = APT / f"{codename}-src"
    for d in ("lists/partial", "archives/partial", "etc"):
        (base / d).mkdir(parents=True, exist_ok=True)
    (base / "status").touch()
    lines = []
    for uri, suites, key in apt_entries():
        for s in suites:
            if s.split("-")[0] == codename:
                lines.append(f"deb-src [signed-by={key or '/usr/share/keyrings/debian-archive-keyring.gpg'}]"
                             f" {uri} {s} main\n")
    if not lines:
        raise FetchError(f"no apt source for {codename}: cannot derive a mirror")
    (base / "etc" / "sources.list").write_text("".join(lines))
    return ["apt-get", "-q", "-o", f"Dir::Etc::SourceList={base / 'etc' / 'sources.list'}",
            "-o", "Dir::Etc::SourceParts=/nonexistent", "-o", f"Dir::State::Lists={base / 'lists'}",
            "-o", f"Dir::State::status={base / 'status'}", "-o", "Debug::NoLocking=1"]
