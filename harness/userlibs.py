"""Library builds the user made (LibreSSL, BoringSSL, a patched OpenSSL...):
registered in build/libs/local.toml and compiled against the adapter of
their kind by native_shim.build in a child process (the controller never
loads a TLS library)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from harness import backends, results

LOCAL = results.ROOT / "build" / "libs" / "local.toml"
KINDS = ("openssl", "wolfssl", "mbedtls", "gnutls")


class UserLibError(ValueError):
    pass


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def add(name: str, prefix: str, kind: str = "openssl") -> str:
    """Register and build; returns the library name to pass to --lib."""
    p = Path(prefix).resolve()
    if kind not in KINDS:
        raise UserLibError(f"--lib-kind must be one of {', '.join(KINDS)} (got {kind!r})")
    if not re.fullmatch(r"[A-Za-z0-9_.@+-]+", name):
        raise UserLibError(f"library name {name!r}: letters, digits and _.@+- only")
    if not p.is_dir():
        raise UserLibError(f"--lib-prefix {prefix}: not a directory")
    if not any((p / d).is_dir() for d in ("include", "usr/include")):
        raise UserLibError(f"--lib-prefix {prefix}: no include/ directory (an install prefix is needed)")
    if not any((p / d).is_dir() for d in ("lib", "lib64", "usr/lib/x86_64-linux-gnu")):
        raise UserLibError(f"--lib-prefix {prefix}: no lib/ or lib64/ directory")
    text = LOCAL.read_text() if LOCAL.exists() else ""
    blocks = [b for b in text.split("[[variant]]") if b.strip() and f"name = {_toml_str(name)}" not in b]
    blocks.append(f"\nname = {_toml_str(name)}\nkind = {_toml_str(kind)}\nprefix = {_toml_str(str(p))}\n")
    LOCAL.parent.mkdir(parents=True, exist_ok=True)
    LOCAL.write_text("".join("[[variant]]" + b for b in blocks))
    r = subprocess.run([sys.executable, "-m", "native_shim.build", "--only", name, "--quiet"],
                       capture_output=True, text=True, cwd=str(results.ROOT), timeout=600)
    if r.returncode != 0 or not backends.availability().get(name, (False,))[0]:
        err = [l for l in (r.stderr + r.stdout).splitlines() if "error" in l.lower()]
        raise UserLibError(f"building the {kind} adapter against {p} failed: "
                           f"{(err or ['see native_shim.build output'])[0].strip()[:200]}")
    return name


def name_for(prefix: str, kind: str) -> str:
    return f"{kind}@{re.sub(r'[^A-Za-z0-9]+', '-', Path(prefix).resolve().name).strip('-') or 'prefix'}"
