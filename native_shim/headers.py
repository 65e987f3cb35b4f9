"""What a library's own headers say it is: the version text an OpenSSL-like
tree or install prefix declares in openssl/opensslv.h, read without
compiling or loading anything.

LibreSSL calls itself OpenSSL 2.0.0 (OPENSSL_VERSION_NUMBER 0x20000000) and
says what it is in LIBRESSL_VERSION_TEXT ("LibreSSL 4.3.1") and
LIBRESSL_VERSION_NUMBER (0xMNNFF00fL); OpenSSL 3.x has
OPENSSL_FULL_VERSION_STR, 1.1.1 only OPENSSL_VERSION_TEXT.
"""
from __future__ import annotations

import re
from pathlib import Path

OPENSSLV = Path("openssl") / "opensslv.h"


def _define(text: str, name: str) -> str | None:
    m = re.search(rf"^\s*#\s*define\s+{name}\s+(.+?)\s*$", text, re.M)
    return m.group(1) if m else None


def libressl_version(text: str) -> str | None:
    """'LibreSSL X.Y.Z' from an opensslv.h's text, or None when it is not LibreSSL's."""
    s = _define(text, "LIBRESSL_VERSION_TEXT")
    if s and s.startswith('"'):
        return s.strip('"')
    n = _define(text, "LIBRESSL_VERSION_NUMBER")
    m = re.fullmatch(r"0x([0-9a-fA-F]{8,9})L?", n or "")
    if not m:
        return None
    v = int(m.group(1), 16)             # 0xMNNFFPPSL: major, minor, fix
    return f"LibreSSL {v >> 28}.{(v >> 20) & 0xff}.{(v >> 12) & 0xff}"


def openssl_version(text: str) -> str | None:
    """The version an OpenSSL-like opensslv.h declares: LibreSSL's own text,
    else OpenSSL's full version string (3.x), else the number in
    OPENSSL_VERSION_TEXT (1.1.1); None when it says none."""
    lib = libressl_version(text)
    if lib:
        return lib
    full = _define(text, "OPENSSL_FULL_VERSION_STR")
    if full and full.startswith('"'):
        return full.strip('"')
    m = re.search(r'"OpenSSL\s+(\S+)', _define(text, "OPENSSL_VERSION_TEXT") or "")
    return m.group(1) if m else None


def _opensslv(include_dirs: list[Path]) -> str | None:
    for d in include_dirs:
        f = Path(d) / OPENSSLV
        if f.is_file():
            return f.read_text(errors="replace")
    return None


def version_of(include_dirs: list[Path]) -> str | None:
    """The version the first openssl/opensslv.h under include_dirs declares."""
    text = _opensslv(include_dirs)
    return openssl_version(text) if text else None


def is_libressl_tree(tree: Path) -> bool:
    """A LibreSSL portable source tree: its build files (CMakeLists.txt,
    configure or configure.ac) and an include/openssl/opensslv.h that
    declares a LibreSSL version."""
    if not any((tree / f).is_file() for f in ("CMakeLists.txt", "configure", "configure.ac")):
        return False
    text = _opensslv([tree / "include"])
    return bool(text and libressl_version(text))
