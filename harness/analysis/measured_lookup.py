"""What this project has measured about a library version or a server
version, for `tlsharness check`: the run history (results/history.sqlite,
read only) and the tables of docs/measured.md, each line naming its source
(the history file, or the document's section).  Nothing here is a verdict
of its own: a line says what was measured, or "not measured here".
"""
from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

from harness.analysis import history

ROOT = Path(__file__).resolve().parent.parent.parent
MEASURED_MD = ROOT / "docs" / "measured.md"
NAMES = {"openssl": "OpenSSL", "libressl": "LibreSSL", "wolfssl": "wolfSSL",
         "mbedtls": "mbed TLS", "gnutls": "GnuTLS", "kamailio": "Kamailio", "opensips": "OpenSIPS"}


def series(version_text: str) -> tuple[str, str] | None:
    """("OpenSSL", "3.0") from "OpenSSL 3.0.19 27 Jan 2026"; ("GnuTLS", "3.7")
    from a bare "3.7.9" needs the family: see series_of."""
    m = re.match(r"\s*(OpenSSL|LibreSSL|wolfSSL|mbed TLS|kamailio|opensips)\s+(\d+)\.(\d+)",
                 version_text, re.I)
    if not m:
        return None
    name = NAMES.get(m.group(1).lower().replace(" ", ""), m.group(1))
    return name, f"{m.group(2)}.{m.group(3)}"


def series_of(family: str, version_text: str | None) -> tuple[str, str] | None:
    if not version_text:
        return None
    s = series(version_text)
    if s:
        return s
    m = re.match(r"(\d+)\.(\d+)", version_text)
    return (NAMES.get(family, family), f"{m.group(1)}.{m.group(2)}") if m else None


# ---- the run history ----------------------------------------------------------------------

def history_db(db: str | None) -> Path:
    return Path(db) if db else history.db_path(ROOT / "results")


def history_line(db: Path, name: str, majmin: str) -> str:
    """One line: the recorded runs of this library series, per set of fixes."""
    src = f"history {db}"
    if not db.is_file() or db.stat().st_size == 0:
        return f"{src}: no run history there: not measured here"
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
        rows = history.rates(con, ("lib", "lib_version", "mitigations"))
        con.close()
    except (sqlite3.Error, history.HistoryError, json.JSONDecodeError) as e:
        return f"{src}: unreadable ({e}): not measured here"
    want = f"{name} {majmin}.".lower()
    per: dict[str, list[int]] = {}
    for r in rows:
        if want in f"{r['lib_version'] or ''}".lower():
            fixes = ",".join(json.loads(r["mitigations"] or "[]")) or "none"
            n = per.setdefault(fixes, [0, 0])
            n[0] += r["runs"]
            n[1] += r["failures"]
    if not per:
        return f"{src}: no judged run of {name} {majmin}: not measured here"
    parts = [f"fixes {k}: failed {f}/{n}" for k, (n, f) in sorted(per.items(), key=lambda x: -x[1][0])]
    more = f" (+{len(parts) - 6} more sets)" if len(parts) > 6 else ""
    return f"{src}: {name} {majmin}, all scenarios: " + "; ".join(parts[:6]) + more


# ---- docs/measured.md ----------------------------------------------------------------------

def _sections(text: str) -> list[tuple[str, list[str]]]:
    """(heading path "A / B", lines) for every ## and ### section."""
    out: list[tuple[str, list[str]]] = []
    h2 = ""
    for line in text.splitlines():
        m = re.match(r"(#{2,3}) (.*)", line)
        if m:
            h2 = m.group(2) if m.group(1) == "##" else h2
            out.append((m.group(2) if m.group(1) == "##" else f"{h2} / {m.group(2)}", []))
        elif out:
            out[-1][1].append(line)
    return out


def _table(lines: list[str]) -> tuple[list[str], list[list[str]]] | None:
    """The section's first table: (header, rows)."""
    block: list[str] = []
    for ln in lines:
        if ln.strip().startswith("|"):
            block.append(ln)
        elif block:
            break
    rows = [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in block]
    rows = [r for r in rows if not all(set(c) <= set("-: ") for c in r)]
    return (rows[0], rows[1:]) if len(rows) > 1 else None


def _summary(head: list[str], body: list[list[str]], majmin: str) -> str:
    """A fix-by-family table (a "none" column): how many rows each fix cures
    (failed 0/N); any other table: its rows naming the version."""
    if "none" in head:
        fails = sum(1 for r in body if re.search(r"failed [1-9]", r[head.index("none")]))
        cures = {h: sum(1 for r in body if i < len(r) and re.match(r"failed 0/", r[i]))
                 for i, h in enumerate(head) if i > head.index("none")}
        cured = ", ".join(f"{h} {k}" for h, k in sorted(cures.items(), key=lambda x: -x[1]) if k)
        return (f"{len(body)} families; unfixed fails in {fails}; families cured (failed 0/N) "
                f"by: {cured or 'no fix'}")
    hits = [r for r in body if majmin in r[0]]
    return "; ".join(", ".join(f"{h} {c}" for h, c in zip(head[:4], r[:4])) for r in hits[:3])


def doc_lines(name: str, majmin: str, limit: int = 3) -> list[str]:
    """Lines citing the measured.md sections whose heading names this series."""
    try:
        text = MEASURED_MD.read_text()
    except OSError:
        return [f"{MEASURED_MD.name}: not found: not measured here"]
    out = []
    for heading, lines in _sections(text):
        h = heading.lower()
        if name.lower() not in h or not re.search(rf"\b{re.escape(majmin)}\b", h):
            continue
        t = _table(lines)
        s = (_summary(*t, majmin) if t else "") or "names this version (no table row read: see there)"
        out.append(f"docs/measured.md § {heading!r}: {s}")
    return out[:limit] or [f"docs/measured.md: no section on {name} {majmin}: not measured here"]
