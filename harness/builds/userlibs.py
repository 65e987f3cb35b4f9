"""Library builds the user made (LibreSSL, BoringSSL, a patched OpenSSL...):
registered in the per-user cache (harness.builds.native.user_dir: libs.toml, the
adapters in native/), never in the checkout, and compiled against the
adapter of their kind by native_shim.build in a child process (the
controller never loads a TLS library).  A build is kept only once its
adapter loads; a failed one is removed, with the loader's own words."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from harness.builds import native
from harness.builds import backends
from harness.builds import safepath

KINDS = ("openssl", "wolfssl", "mbedtls", "gnutls")


class UserLibError(ValueError):
    pass


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _check(name: str, kind: str, kind_flag: str) -> None:
    if kind not in KINDS:
        raise UserLibError(f"{kind_flag} must be one of {', '.join(KINDS)} (got {kind!r})")
    try:
        safepath.check_name(name, "library name")
    except safepath.BadName as e:
        raise UserLibError(str(e)) from None


def _cache() -> Path:
    """The per-user cache, made if need be: one line when it cannot be used
    (TLSH_CACHE a file, under /proc, read-only)."""
    d = native.user_dir()
    try:
        if d.exists() and not d.is_dir():
            raise NotADirectoryError(20, "Not a directory")
        d.mkdir(parents=True, exist_ok=True)
        probe = d / f".tlsh-write-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise UserLibError(f"the build cache {d} (TLSH_CACHE) cannot be used: "
                           f"{e.strerror or type(e).__name__}") from None
    return d


def _user_entries() -> list[dict]:
    import tomllib
    try:
        return tomllib.loads((native.user_dir() / "libs.toml").read_text()).get("variant", [])
    except (OSError, ValueError):
        return []


def _slug(name: str) -> str:
    """The adapter's part of a name (native_shim.fetch.slug: _tlsh_v_<slug>)."""
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")


def _project_variants() -> list[str]:
    """The names of the project's own variant builds (native_shim/variants.toml)."""
    import tomllib
    try:
        text = (native.ROOT / "native_shim" / "variants.toml").read_text()
        return [str(v.get("name")) for v in tomllib.loads(text).get("variant", [])]
    except (OSError, ValueError):
        return [i["lib"] for i in native.build_report().values() if i.get("lib")]


def _no_clash(name: str) -> None:
    """A name must not be one of the project's own builds (a user build would
    silently replace it for every command) nor map to the adapter of another
    build (`x_y` and `x.y` both build _tlsh_v_x_y)."""
    own = list(backends.REGISTRY) + _project_variants()
    for other in own:
        if name == other or _slug(name) == _slug(other):
            raise UserLibError(f"library name {name!r} is {'' if name == other else 'too close to '}"
                               f"the project's own build {other!r}: choose another name "
                               f"(a user build never replaces one of the project's)")
    for e in _user_entries():
        other = str(e.get("name", ""))
        if other != name and _slug(other) == _slug(name):
            raise UserLibError(f"library name {name!r} clashes with your build {other!r} (both "
                               f"would be the adapter _tlsh_v_{_slug(name)}): choose "
                               f"another name, or use {other!r}")


def add(name: str, prefix: str, kind: str = "openssl", flags=("--prefix", "--kind")) -> str:
    """Register and build; returns the library name to pass to --lib.
    FLAGS are the options the user typed for the prefix and the kind."""
    prefix_flag, kind_flag = flags
    p = Path(prefix).resolve()
    _check(name, kind, kind_flag)
    _no_clash(name)
    if not p.is_dir():
        raise UserLibError(f"{prefix_flag} {prefix}: not a directory")
    if not any((p / d).is_dir() for d in ("include", "usr/include")):
        raise UserLibError(f"{prefix_flag} {prefix}: no include/ directory (an install prefix is needed)")
    if not any((p / d).is_dir() for d in ("lib", "lib64", "usr/lib/x86_64-linux-gnu")):
        raise UserLibError(f"{prefix_flag} {prefix}: no lib/ or lib64/ directory")
    libs = _cache() / "libs.toml"
    text = libs.read_text() if libs.exists() else ""
    keep = [b for b in text.split("[[variant]]") if b.strip() and f"name = {_toml_str(name)}" not in b]
    entry = f"\nname = {_toml_str(name)}\nkind = {_toml_str(kind)}\nprefix = {_toml_str(str(p))}\n"
    libs.write_text("".join("[[variant]]" + b for b in keep + [entry]))
    r = subprocess.run([sys.executable, "-m", "native_shim.build", "--user", "--only", name, "--quiet"],
                       capture_output=True, text=True, cwd=str(native.ROOT), timeout=600)
    ext = backends.registry().get(name)
    why = None
    if r.returncode != 0 or not backends.availability().get(name, (False,))[0]:
        err = [l for l in (r.stderr + r.stdout).splitlines() if "error" in l.lower()]
        why = (f"building the {kind} adapter against {p} failed: "
               f"{(err or ['see native_shim.build output'])[0].strip()[:200]}")
    else:
        why = _load_error(ext)
        if why:
            why = f"the {kind} adapter built against {p} does not load: {why}"
    if why:
        _forget(name, ext, keep)
        raise UserLibError(why)
    return name


def build(name: str, source: str, kind: str = "openssl") -> str:
    """Build a source tree or tarball with the recipe of its kind into the
    per-user cache, then register it as add() does; nothing is left behind
    when either step fails.  The name is checked as a name, and the build's
    folder to lie inside the cache's builds/, before anything is touched."""
    _check(name, kind, "--kind")
    _no_clash(name)
    if not Path(source).exists():
        raise UserLibError(f"--from-source {source}: no such file or directory")
    owner = _cache() / "builds"
    work = owner / name
    if not safepath.inside(owner, work) or work.resolve().parent != owner.resolve():
        raise UserLibError(f"library name {name!r}: its build folder {work} would not be "
                           f"inside {owner}: refused")
    r = subprocess.run([sys.executable, "-c", BUILD_PY, kind, str(Path(source).resolve()),
                        str(work / "root"), str(owner)], cwd=str(native.ROOT), timeout=7200,
                       stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        lines = [l for l in r.stderr.splitlines() if l.strip()]
        raise UserLibError(lines[-1] if lines else f"the build failed (exit {r.returncode})")
    try:
        return add(name, str(work / "root" / "usr"), kind, ("--from-source", "--kind"))
    except UserLibError:
        import shutil
        if safepath.inside(owner, work):
            shutil.rmtree(work, ignore_errors=True)
        raise


BUILD_PY = """
import sys
from pathlib import Path
from native_shim import srcbuild
from native_shim.fetch import FetchError
try:
    srcbuild.die_with_parent()         # a killed `libs build` stops its build too
    srcbuild.build_tree(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), owner=Path(sys.argv[4]))
except (FetchError, OSError) as e:
    sys.exit(str(e).splitlines()[0] if str(e) else type(e).__name__)
"""


def _load_error(ext: str) -> str | None:
    """The loader's own words when the adapter cannot be loaded (in a child
    process: the controller never loads a TLS library); None when it loads."""
    r = subprocess.run([sys.executable, "-c", f"from harness.builds import native; native.load({ext!r})"],
                       capture_output=True, text=True, cwd=str(native.ROOT), timeout=60)
    if r.returncode == 0:
        return None
    lines = [l.strip() for l in r.stderr.splitlines() if l.strip()]
    return (lines[-1] if lines else f"exit {r.returncode}")[:300]


def _forget(name: str, ext: str | None, keep: list[str]) -> None:
    """A build that failed leaves nothing behind: entry, adapter, report line."""
    import json
    libs = native.user_dir() / "libs.toml"
    libs.write_text("".join("[[variant]]" + b for b in keep))
    rep_path = native.user_native() / "build.json"
    try:
        rep = json.loads(rep_path.read_text())
    except (OSError, ValueError):
        rep = {}
    info = rep.pop(ext, None) if ext else None
    if info and info.get("path") and safepath.inside(native.user_native(), info["path"]):
        Path(info["path"]).unlink(missing_ok=True)
    for k in [k for k, v in rep.items() if isinstance(v, dict) and v.get("lib") == name]:
        rep.pop(k)
    rep_path.parent.mkdir(parents=True, exist_ok=True)
    rep_path.write_text(json.dumps(rep, indent=2) + "\n")


def name_for(prefix: str, kind: str) -> str:
    return f"{kind}@{re.sub(r'[^A-Za-z0-9]+', '-', Path(prefix).resolve().name).strip('-') or 'prefix'}"
