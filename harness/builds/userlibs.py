"""Library builds the user made (LibreSSL, BoringSSL, a patched OpenSSL...):
registered in the per-user cache (harness.builds.native.user_dir: libs.toml, the
adapters in native/), never in the checkout, and compiled against the
adapter of their kind by native_shim.build in a child process (the
controller never loads a TLS library).  A build is kept only once its
adapter loads; a failed one is removed, with the loader's own words."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from harness.builds import native
from harness.builds import backends

KINDS = ("openssl", "wolfssl", "mbedtls", "gnutls")


class UserLibError(ValueError):
    pass


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _check(name: str, kind: str, kind_flag: str) -> None:
    if kind not in KINDS:
        raise UserLibError(f"{kind_flag} must be one of {', '.join(KINDS)} (got {kind!r})")
    if not re.fullmatch(r"[A-Za-z0-9_.@+-]+", name):
        raise UserLibError(f"library name {name!r}: letters, digits and _.@+- only")


def add(name: str, prefix: str, kind: str = "openssl") -> str:
    """Register and build; returns the library name to pass to --lib."""
    p = Path(prefix).resolve()
    _check(name, kind, "--lib-kind")
    if not p.is_dir():
        raise UserLibError(f"--lib-prefix {prefix}: not a directory")
    if not any((p / d).is_dir() for d in ("include", "usr/include")):
        raise UserLibError(f"--lib-prefix {prefix}: no include/ directory (an install prefix is needed)")
    if not any((p / d).is_dir() for d in ("lib", "lib64", "usr/lib/x86_64-linux-gnu")):
        raise UserLibError(f"--lib-prefix {prefix}: no lib/ or lib64/ directory")
    libs = native.user_dir() / "libs.toml"
    text = libs.read_text() if libs.exists() else ""
    keep = [b for b in text.split("[[variant]]") if b.strip() and f"name = {_toml_str(name)}" not in b]
    entry = f"\nname = {_toml_str(name)}\nkind = {_toml_str(kind)}\nprefix = {_toml_str(str(p))}\n"
    libs.parent.mkdir(parents=True, exist_ok=True)
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
    when either step fails."""
    _check(name, kind, "--kind")
    if not Path(source).exists():
        raise UserLibError(f"--from-source {source}: no such file or directory")
    work = native.user_dir() / "builds" / name
    r = subprocess.run([sys.executable, "-c", BUILD_PY, kind, str(Path(source).resolve()),
                        str(work / "root")], cwd=str(native.ROOT), timeout=7200,
                       stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        lines = [l for l in r.stderr.splitlines() if l.strip()]
        raise UserLibError(lines[-1] if lines else f"the build failed (exit {r.returncode})")
    try:
        return add(name, str(work / "root" / "usr"), kind)
    except UserLibError:
        import shutil
        shutil.rmtree(work, ignore_errors=True)
        raise


BUILD_PY = """
import sys
from pathlib import Path
from native_shim import srcbuild
from native_shim.fetch import FetchError
try:
    srcbuild.build_tree(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]))
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
    if info and info.get("path"):
        Path(info["path"]).unlink(missing_ok=True)
    for k in [k for k, v in rep.items() if isinstance(v, dict) and v.get("lib") == name]:
        rep.pop(k)
    rep_path.parent.mkdir(parents=True, exist_ok=True)
    rep_path.write_text(json.dumps(rep, indent=2) + "\n")


def name_for(prefix: str, kind: str) -> str:
    return f"{kind}@{re.sub(r'[^A-Za-z0-9]+', '-', Path(prefix).resolve().name).strip('-') or 'prefix'}"
