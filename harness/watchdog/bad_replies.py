"""The load generator's bad replies in words: the kinds counted (for the
verdict's reason), one evidence line per reply kept, and bad-replies.json in
the run folder.

The load generators count every bad reply by kind and keep their first few
whole in the counters segment (struct tlsh_lg_bad, read by
LoadgenView.bad_samples), so this works the same after they were killed.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

EVIDENCE_LINES = 6          # bad replies named in the verdict's evidence; the rest in the file
BYTES_SHOWN = 120           # characters of the escaped first bytes in an evidence line


def kinds_text(lg: dict) -> str:
    """' (3 duplicate, 1 status)' from the load generators' totals, '' when not known."""
    parts = [f"{n} {k}" for k, n in (lg.get("bad_kinds") or {}).items() if n]
    return f" ({', '.join(parts)})" if parts else ""


def escaped(raw: bytes, limit: int = BYTES_SHOWN) -> str:
    """Raw bytes on one line: printable ASCII as is, the rest escaped (\\r, \\n, \\xNN)."""
    text = repr(bytes(raw))[2:-1]
    return text if len(text) <= limit else text[:limit] + "..."


def _window(r: dict) -> str:
    n = r["live"]
    if n == 0:
        return "while nothing was outstanding"
    if n == 1 or r["oldest"] == r["newest"]:
        return f"while {r['oldest']} was outstanding"
    return f"while {n} were outstanding ({r['oldest']}..{r['newest']})"


def _ms(ns: int) -> str:
    return f"{ns / 1e6:.3g} ms" if ns < 10**9 else f"{ns / 1e9:.3g} s"


def describe(r: dict) -> str:
    """One line for one kept bad reply (a dict of LoadgenView.bad_samples)."""
    conn, kind = r["conn"], r["kind"]
    what = f"{r['status']} for CSeq {r['cseq']} (Call-ID {r['call_id']})"
    first = f"first bytes: {escaped(r['bytes'])}"
    if kind == "duplicate":
        ago = f"{_ms(r['time_ns'] - r['answered_ns'])} " if r["answered_ns"] else ""
        return f"duplicate reply on connection {conn}: {what} {ago}after it was answered, {_window(r)}"
    if kind == "unknown":
        sent = (f"never sent (the next would be {r['next_seq']})" if r["cseq"] >= r["next_seq"]
                else "sent earlier, neither outstanding nor among the last answered")
        return f"unknown reply on connection {conn}: {what}, {sent}, {_window(r)}; {first}"
    if kind == "wrong-connection":
        return (f"reply for connection {r['cid_conn']} read on connection {conn}: {what}, "
                f"{_window(r)}; {first}")
    if kind == "status":
        return f"non-200 reply on connection {conn}: {what}; {first}"
    return (f"unparseable reply on connection {conn}: {r['why'] or kind} "
            f"({r['msg_len']} bytes), {_window(r)}; {first}")


def _record(r: dict) -> dict:
    out = {k: v for k, v in r.items() if k != "bytes"}
    out["outstanding"] = {"count": out.pop("live"), "oldest": out.pop("oldest"),
                          "newest": out.pop("newest")}
    out["since_answered_ms"] = round((r["time_ns"] - r["answered_ns"]) / 1e6, 3) \
        if r["answered_ns"] else None
    out["bytes"] = escaped(r["bytes"], limit=10**6)
    out["bytes_hex"] = bytes(r["bytes"]).hex()
    out["evidence"] = describe(r)
    return out


def report(view, run_dir) -> list[str]:
    """Write <run_dir>/bad-replies.json when the load generators read any bad
    reply, and return the verdict's evidence lines for them ([] when none or
    when there is no load generator view)."""
    if view is None:
        return []
    total = view.total()
    if not total.get("bad"):
        return []
    kept = view.bad_samples()
    doc = {"bad": total["bad"], "kinds": total.get("bad_kinds", {}),
           "answered": total.get("answered", 0), "kept": len(kept),
           "kept_per_process": int(view.lib.TLSH_LG_BAD_SAMPLES),
           "replies": [_record(r) for r in kept]}
    path = Path(run_dir) / "bad-replies.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, path)
    lines = [describe(r) for r in kept[:EVIDENCE_LINES]]
    if total["bad"] > len(lines):
        lines.append(f"{total['bad']} bad replies in all{kinds_text(total)}; the first "
                     f"{len(kept)} kept in bad-replies.json")
    return lines
