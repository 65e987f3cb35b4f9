"""Build the cffi extensions of tlsharness into harness/_native/.

One extension per TLS library, each built only when its library is found
(pkg-config or headers); the reason is printed when one is skipped.  The
library-independent core (arena, locks, SIP) is always built.

    python -m native_shim.build [--only NAME] [--quiet]
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from native_shim import cdef, headers

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = ROOT / "harness" / "_native"
INCLUDE = HERE / "include"
SRC = HERE / "src"
CFLAGS = ["-O2", "-g", "-Wall", "-Wno-unused-function", "-std=gnu11", "-fno-strict-aliasing"]


@dataclass
class Extension:
    name: str                      # module name: harness._native.<name>
    bindings: list[str]            # binding modules under native_shim/bindings
    pkg: str | None = None         # pkg-config name of the TLS library, if any
    libraries: list[str] = field(default_factory=list)
    probe_header: str | None = None  # header that must exist when pkg is None

    def find(self) -> tuple[bool, str, dict]:
        """Return (found, reason, flags) for the TLS library of this extension."""
        if self.pkg is None and self.probe_header is None:
            return True, "no TLS library", {"cflags": [], "libs": self.libraries, "version": ""}
        if self.pkg and shutil.which("pkg-config"):
            r = subprocess.run(["pkg-config", "--cflags", "--libs", self.pkg],
                               capture_output=True, text=True)
            if r.returncode == 0:
                v = subprocess.run(["pkg-config", "--modversion", self.pkg],
                                   capture_output=True, text=True).stdout.strip()
                flags = r.stdout.split()
                return True, f"pkg-config {self.pkg} {v}", {
                    "cflags": [f for f in flags if not f.startswith("-l")],
                    "libs": [f[2:] for f in flags if f.startswith("-l")] + self.libraries,
                    "version": v}
        if self.probe_header:
            for inc in ("/usr/include", "/usr/local/include"):
                if Path(inc, self.probe_header).exists():
                    ver = ""
                    for h in Path(inc, self.probe_header).parent.glob("*.h"):
                        m = re.search(r'#define \w+_VERSION_STRING\s+"([^"]+)"', h.read_text(errors="replace"))
                        if m:
                            ver = m.group(1)
                            break
                    return True, f"header {self.probe_header} {ver}".strip(), {
                        "cflags": [], "libs": self.libraries, "version": ver}
            return False, f"{self.probe_header} not found (install the -dev package)", {}
        return False, f"pkg-config cannot find {self.pkg} (install its -dev package)", {}


EXTENSIONS = [
    Extension("_tlsh_core", ["core"]),
    Extension("_tlsh_loadgen", ["core", "loadgen"], pkg="openssl"),
    # one extension per TLS library, same entry points (bindings/tls.py)
    Extension("_tlsh_openssl", ["core", "stand", "tls", "openssl"], pkg="openssl"),
    Extension("_tlsh_wolfssl", ["core", "stand", "tls", "wolfssl"], pkg="wolfssl"),
    Extension("_tlsh_mbedtls", ["core", "stand", "tls", "mbedtls"], probe_header="mbedtls/ssl.h",
              libraries=["mbedtls", "mbedx509", "mbedcrypto"]),
    Extension("_tlsh_gnutls", ["core", "stand", "tls", "gnutls"], pkg="gnutls"),
]


KIND_LIBS = {"openssl": ["ssl", "crypto"], "wolfssl": ["wolfssl"],
             "mbedtls": ["mbedtls", "mbedx509", "mbedcrypto"], "gnutls": ["gnutls"]}
def user_libs_file() -> Path:
    """The builds the user added (never in the checkout): see harness.builds.native.user_dir."""
    from harness.builds import native
    return native.user_dir() / "libs.toml"


def _variant_dirs(prefix: Path) -> tuple[list[str], list[str]] | None:
    """(include dirs, lib dirs) of a prefix: Debian layout or a plain install."""
    inc = [d for d in (prefix / "usr/include", prefix / "usr/include/x86_64-linux-gnu",
                       prefix / "include") if d.is_dir()]
    lib = [d for d in (prefix / "usr/lib/x86_64-linux-gnu", prefix / "usr/lib", prefix / "lib64",
                       prefix / "lib")
           if d.is_dir()]
    return ([str(d) for d in inc], [str(d) for d in lib]) if inc and lib else None


def variant_extensions(user: bool = False) -> list[tuple[Extension, dict]]:
    """Variant builds: fetched Debian prefixes, or (user) the prefixes the user added."""
    import tomllib
    from native_shim import fetchbase
    out = []
    if user:
        f = user_libs_file()
        try:
            entries = [dict(v, origin="user prefix")
                       for v in tomllib.loads(f.read_text()).get("variant", [])] if f.exists() else []
        except (OSError, tomllib.TOMLDecodeError):
            entries = []
    else:
        entries = [dict(v, prefix=str(fetchbase.prefix_of(v["name"])),
                        origin=("debian " + v["suite"]) if "suite" in v else
                        f"debian source package {v.get('source')}" + (
                            ", debug build" if v.get("build") == "openssl-debug" else ""))
                   for v in fetchbase.variants()]
    for v in entries:
        ext = Extension("_tlsh_v_" + fetchbase.slug(v["name"]), ["core", "stand", "tls", v["kind"]])
        base = Path(v["prefix"]).parent
        if v.get("optional") and not (base / ".done").exists():
            if v.get("source") and v.get("build") != "openssl-debug":   # a source recipe
                why = (base / "reason.txt").read_text().strip() if (base / "reason.txt").exists() \
                    else (f"built from its release tarball ({v.get('upstream', 'upstream')}): "
                          f"{v['tarball']}=PATH make libs LIBS={v['name']}" if v.get("tarball")
                          else "built from source by `make libs`")
                out.append((ext, {"lib": v["name"], "kind": v["kind"], "prefix": v["prefix"],
                                  "origin": "source", "missing": f"not built: {why}"}))
            continue                    # optional and not built
        dirs = _variant_dirs(Path(v["prefix"]))
        info = {"lib": v["name"], "kind": v["kind"], "prefix": v["prefix"], "origin": v["origin"]}
        if dirs is None:
            out.append((ext, dict(info, missing=f"no headers/libraries under {v['prefix']}"
                                  + (" (run: python -m native_shim.fetch)" if "debian" in v["origin"] else ""))))
            continue
        inc, lib = dirs
        deb = Path(v["prefix"]).parent / "debs.txt"
        version = ""
        if deb.exists():
            m = re.search(r"_([0-9][^_]*)_", deb.read_text().splitlines()[0])
            version = m.group(1) if m else ""
        if v["kind"] == "openssl":      # LibreSSL says what it is only there; a user's build too
            said = headers.version_of([Path(d) for d in inc])
            if said and (said.startswith("LibreSSL") or not version):
                version = said
        info["flags"] = {"cflags": [f"-I{d}" for d in inc], "libs": KIND_LIBS[v["kind"]],
                         "libdirs": lib, "version": version}
        out.append((ext, info))
    return out


CAPS_PY = """
import json, sys
from harness.builds import native
ffi, lib = native.load("{mod}")
c = ffi.new("struct tlsh_lib_caps *"); lib.tlsh_lib_caps(c)
print(json.dumps({{"alloc_hook": bool(c.alloc_hook), "lock_hook": bool(c.lock_hook),
                  "tls13": bool(c.tls13), "write_dup": bool(c.write_dup),
                  "flags": ffi.string(c.flags).decode(), "version": ffi.string(lib.tlsh_lib_version()).decode()}}))
"""


def caps_of(module: str) -> dict | None:
    """Capabilities of a built TLS extension, read in a child process (so
    that whoever reads build.json never has to load a TLS library)."""
    r = subprocess.run([sys.executable, "-c", CAPS_PY.format(mod=module)], capture_output=True,
                       text=True, cwd=str(ROOT), timeout=60)
    try:
        return json.loads(r.stdout)
    except ValueError:
        return None


def _binding(name):
    return importlib.import_module(f"native_shim.bindings.{name}")


def headers_of(ext: Extension) -> list[str]:
    """The headers an extension includes and declares to cffi, in binding order."""
    out = []
    for m in (_binding(b) for b in ext.bindings):
        out += [h for h in m.HEADERS if h not in out]
    return out


def make_ffi(ext: Extension, flags: dict):
    import cffi
    from native_shim import features
    mods = [_binding(b) for b in ext.bindings]
    for kind in (b for b in ext.bindings if b in features.TESTS):
        found = features.detect(kind, flags.get("cflags", []), libdirs=flags.get("libdirs", []))
        flags = dict(flags, features=found,
                     cflags=flags.get("cflags", []) + features.defines(found))
    headers = headers_of(ext)
    ffi = cffi.FFI()
    ffi.cdef(cdef.cdef_for(headers) + "\nconst char *tlsh_build_info(void);\n")
    sources, seen = [], set()
    for m in mods:
        for s in m.SOURCES:
            if s not in seen:
                seen.add(s)
                sources.append(str(SRC / s))
    ffi.set_source(
        f"harness._native.{ext.name}",
        "\n".join(f'#include "{h}"' for h in headers) + "\n"
        + "\n".join(getattr(m, "CUSTOMIZATIONS", "") for m in mods)
        + f'\nconst char *tlsh_build_info(void) {{ return {json.dumps(json.dumps(flags))}; }}\n',
        sources=sources,
        include_dirs=[str(INCLUDE)],
        extra_compile_args=CFLAGS + flags.get("cflags", []),
        libraries=flags.get("libs", []) + ["pthread"],
        library_dirs=flags.get("libdirs", []),
        # a private prefix: RPATH (not RUNPATH) so that the library's own
        # dependencies resolve there too (mbedtls -> mbedx509)
        extra_link_args=["-Wl,--no-as-needed"]
        + [a for d in flags.get("libdirs", []) for a in (f"-Wl,-rpath,{d}", "-Wl,--disable-new-dtags")],
    )
    return ffi


def build(only: str | None = None, quiet: bool = False, user: bool = False) -> dict:
    """Build into harness/_native; with user, only the user's prefixes, into
    the per-user cache (harness.builds.native.user_native)."""
    from harness.builds import native
    out_dir = native.user_native() if user else OUT
    out_dir.mkdir(parents=True, exist_ok=True)
    (OUT / "__init__.py").touch()
    report = {}
    if only:                       # keep what the other extensions' last build said
        try:
            report = json.loads((out_dir / "build.json").read_text())
        except (OSError, ValueError):
            report = {}
    tmp = (out_dir / "cffi") if user else ROOT / "build" / "cffi"
    tmp.mkdir(parents=True, exist_ok=True)
    for ext in ([] if user else EXTENSIONS):
        if only and ext.name != only:
            continue
        found, reason, flags = ext.find()
        if not found:
            report[ext.name] = {"built": False, "reason": reason}
            print(f"skip  {ext.name}: {reason}")
            continue
        ffi = make_ffi(ext, flags)
        if not quiet:
            print(f"build {ext.name} ({reason})", flush=True)
        so = ffi.compile(tmpdir=str(tmp), verbose=False)
        dest = OUT / Path(so).name
        tmpdest = dest.with_name(dest.name + ".new")
        shutil.copy2(so, tmpdest)
        os.replace(tmpdest, dest)   # never rewrite a .so in place: running processes map it
        report[ext.name] = {"built": True, "reason": reason, "path": str(dest),
                            "version": flags.get("version", "")}
        if "tls" in ext.bindings:
            report[ext.name]["caps"] = caps_of(ext.name)
    if not user:
        _build_preloads(report)
    for ext, info in variant_extensions(user):
        if only and ext.name != only and info["lib"] != only:
            continue
        if "missing" in info:
            report[ext.name] = {"built": False, "reason": info["missing"], **info}
            continue
        flags = info.pop("flags")
        if not quiet:
            print(f"build {ext.name} ({info['lib']} from {info['prefix']})", flush=True)
        so = make_ffi(ext, flags).compile(tmpdir=str(tmp), verbose=False)
        dest = out_dir / Path(so).name
        tmpdest = dest.with_name(dest.name + ".new")
        shutil.copy2(so, tmpdest)
        os.replace(tmpdest, dest)
        report[ext.name] = {"built": True, "reason": f"{info['origin']} {flags['version']}".strip(),
                            "path": str(dest), "version": flags["version"], **info}
        if user:                          # the report must name it before caps can load it
            (out_dir / "build.json").write_text(json.dumps(report, indent=2) + "\n")
        report[ext.name]["caps"] = caps_of(ext.name)
    if not user:
        _build_clients(report, tmp, only, quiet)
    (out_dir / "build.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def _build_clients(report: dict, tmp: Path, only: str | None, quiet: bool) -> None:
    """The load generator's client loop on each fetched OpenSSL build too: the
    client lives in private memory and any library will do, and OpenSSL 1.1.1
    spends about a third less CPU per client handshake than 3.0.  Only for the
    builds that --client names (its choices, declared once in harness/spec/params.py):
    a client nobody can choose is not built."""
    from harness.spec.params import BY_NAME
    wanted = set(BY_NAME["client"].choices) - {"auto", "system"}
    for ext, info in variant_extensions(False):
        if info["kind"] != "openssl" or "missing" in info or info["lib"] not in wanted:
            continue
        client = Extension("_tlsh_client_" + ext.name[len("_tlsh_v_"):], ["core", "loadgen"])
        if only and only not in (client.name, info["lib"]):
            continue
        if not quiet:
            print(f"build {client.name} (load generator client on {info['lib']})", flush=True)
        so = make_ffi(client, info["flags"]).compile(tmpdir=str(tmp), verbose=False)
        dest = OUT / Path(so).name
        shutil.copy2(so, str(dest) + ".new")
        os.replace(str(dest) + ".new", dest)
        report[client.name] = {"built": True, "client": info["lib"], "path": str(dest),
                               "version": info["flags"]["version"],
                               "reason": f"load generator client, {info['origin']}"}


def _build_preloads(report: dict) -> None:
    """Plain shared libraries (not cffi) for LD_PRELOAD: the probe's counter,
    the --memory interpose allocator, the pshared and chaos interpositions."""
    for name, srcs, what in (("libtlsh_count", ["preload_count.c"], "LD_PRELOAD counter"),
                             ("libtlsh_interpose", ["preload_arena.c", "arena.c"],
                              "LD_PRELOAD shared-arena allocator"),
                             ("libtlsh_pshared", ["preload_pshared.c"],
                              "LD_PRELOAD pshared lock interposition (mitigation)"),
                             ("libtlsh_chaos", ["preload_chaos.c"],
                              "LD_PRELOAD contention amplifier (--chaos)")):
        so = OUT / f"{name}.so"
        r = subprocess.run(["cc", "-O2", "-g", "-Wall", "-std=gnu11", "-shared", "-fPIC",
                            f"-I{INCLUDE}", "-o", str(so) + ".new", *[str(SRC / x) for x in srcs],
                            "-ldl", "-lpthread"], capture_output=True, text=True)
        if r.returncode == 0:
            os.replace(str(so) + ".new", so)
            report[name] = {"built": True, "reason": what, "path": str(so)}
        else:
            report[name] = {"built": False, "reason": r.stderr.strip()[-200:]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--user", action="store_true", help="the user's prefixes, into the user cache")
    a = ap.parse_args(argv)
    try:
        build(a.only, a.quiet, a.user)
    except Exception as e:  # compile errors: one clear line plus the compiler's output above
        print(f"native_shim build failed: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
