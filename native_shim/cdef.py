"""The cffi declarations, read from the headers themselves.

Each public header marks what Python may see between ``/* cffi:begin */``
and ``/* cffi:end */``.  For an extension, the marked text of its headers
(in order) has its comments and #include lines dropped and goes through the
C preprocessor, so that macros used in it (the activity X-macro, array
lengths) expand exactly as the compiler will expand them; ``static inline``
functions become prototypes (cffi binds them like any function), and every
numeric ``#define`` becomes ``#define NAME ...`` (its value checked by the
compiler).  A field added to a struct in a header is seen by Python with no
other edit.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

INCLUDE = Path(__file__).resolve().parent / "include"
BEGIN, END = "cffi:begin", "cffi:end"

# system types a region uses by value: cffi learns their size from the compiler
SYSTEM_TYPES = {"pthread_mutex_t": "typedef struct { ...; } pthread_mutex_t;"}

_TOKENS = re.compile(r'"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'|/\*.*?\*/|//[^\n]*', re.S)
_DEFINE = re.compile(r"^\s*#\s*define\s+([A-Za-z_]\w*)\s+(.+)$")
_OPERATORS = re.compile(r"[\s()+\-~*/%<>|&^]+")
_INTEGER = re.compile(r"(?:0[xX][0-9a-fA-F]+|\d+)[uUlL]*")


class CdefError(RuntimeError):
    """A header whose marked region cannot become a cdef (says which and why)."""


def strip_comments(text: str) -> str:
    """Comments out, strings kept (a comment becomes one space, as in C)."""
    return _TOKENS.sub(lambda m: m.group(0) if m.group(0)[0] in "\"'" else " ", text)


def regions(path: Path) -> str:
    """The text between the cffi markers of one header (all regions, in order)."""
    text = path.read_text()
    out, pos = [], 0
    while True:
        b = text.find(f"/* {BEGIN} */", pos)
        if b < 0:
            break
        e = text.find(f"/* {END} */", b)
        if e < 0:
            raise CdefError(f"{path.name}: {BEGIN} without {END}")
        out.append(text[b + len(BEGIN) + 6:e])
        pos = e + len(END) + 6
    if not out:
        raise CdefError(f"{path.name}: no /* {BEGIN} */ region")
    if text.find(f"/* {END} */", pos) >= 0:
        raise CdefError(f"{path.name}: {END} without {BEGIN}")
    return "".join(out)


def _logical_lines(text: str) -> list[str]:
    return text.replace("\\\n", " ").splitlines()


def numeric_defines(text: str) -> list[str]:
    """Names of the object-like #defines whose value is an integer constant."""
    names = []
    for line in _logical_lines(text):
        m = _DEFINE.match(line)
        tokens = [t for t in _OPERATORS.split(m.group(2)) if t] if m else []
        if tokens and all(_INTEGER.fullmatch(t) for t in tokens):
            names.append(m.group(1))
    return names


def preprocess(text: str, cc: str = "cc") -> str:
    """Macros expanded by the C preprocessor (no system header read)."""
    if not shutil.which(cc):
        raise CdefError(f"no C compiler ({cc}) to read the headers with")
    r = subprocess.run([cc, "-E", "-P", "-undef", "-x", "c", "-"], input=text,
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise CdefError("preprocessing the cffi regions failed:\n" + r.stderr.strip())
    return r.stdout


def inline_to_prototypes(text: str) -> str:
    """``static inline T f(args) { body }`` -> ``T f(args);``."""
    out, pos = [], 0
    for m in re.finditer(r"\bstatic\s+inline\s+", text):
        if m.start() < pos:
            continue
        brace = text.find("{", m.end())
        semi = text.find(";", m.end())
        if brace < 0 or 0 <= semi < brace:     # a declaration, not a definition
            continue
        depth, i = 0, brace
        while i < len(text):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                break
            i += 1
        out.append(text[pos:m.start()] + text[m.end():brace].rstrip() + ";")
        pos = i + 1
    return "".join(out) + text[pos:]


def cdef_for(headers: list[str], include: Path = INCLUDE, cc: str = "cc") -> str:
    """The cdef text of these headers (file names under include/), in order."""
    src = []
    for h in headers:
        text = strip_comments(regions(include / h))
        src.append("\n".join(line for line in text.splitlines()
                             if not re.match(r"\s*#\s*include\b", line)))
    src = "\n".join(src)
    body = inline_to_prototypes(preprocess(src, cc))
    defines = [f"#define {n} ..." for n in numeric_defines(src)]
    prelude = [decl for name, decl in SYSTEM_TYPES.items() if re.search(rf"\b{name}\b", body)]
    return "\n".join(prelude + defines) + "\n" + body
