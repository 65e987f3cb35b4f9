"""Names the user gives (builds, campaign runs) checked as names, and every
path the tool deletes or writes checked to lie inside the folder it owns,
before anything is touched: a name is never a path, and `.`/`..`, a
separator or an absolute id can never make the tool delete or write outside
its own folder."""
from __future__ import annotations

import re
from pathlib import Path

# a letter or digit first (so never ".", "..", "-x" or a hidden file), then
# letters, digits and _.@+-, at most 64 characters, never ".." inside
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+-]{0,63}")


class BadName(ValueError):
    """A name that is not a name (the message is one line)."""


def check_name(name, what: str = "name") -> str:
    """NAME itself when it is a plain name; BadName naming WHAT otherwise."""
    if not isinstance(name, str) or not name:
        raise BadName(f"{what} must not be empty")
    shown = name if len(name) <= 80 else name[:77] + "..."
    if "/" in name or "\\" in name or "\0" in name:
        raise BadName(f"{what} {shown!r}: a name, not a path (no / or \\)")
    if name in (".", "..") or ".." in name:
        raise BadName(f"{what} {shown!r}: '.' and '..' are not names")
    if len(name) > 64:
        raise BadName(f"{what} {shown!r}: at most 64 characters (got {len(name)})")
    if not NAME_RE.fullmatch(name):
        raise BadName(f"{what} {shown!r}: a letter or digit first, then letters, digits "
                         "and _.@+- only")
    return name


def inside(root, path) -> bool:
    """True when PATH lies strictly below ROOT (both resolved, symlinks
    followed): the only paths the tool may delete or write under ROOT."""
    r, p = Path(root).resolve(), Path(path).resolve()
    return p != r and p.is_relative_to(r)


def must_be_inside(root, path, what: str = "path") -> Path:
    """PATH, after checking it lies strictly below ROOT (ValueError otherwise)."""
    if not inside(root, path):
        raise BadName(f"{what} {path} is not inside {root}: refused")
    return Path(path)
