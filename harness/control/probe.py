"""`tlsharness probe`: the library comparison, measured.

For each library build, a fresh probe process (harness/stand/probe_child.py) runs
under an LD_PRELOAD counter with a load generator as its client; this module
orchestrates and renders the table (terminal, JSON, Markdown).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.builds import native
from harness.analysis import results
from harness.spec import certs
from harness.builds import backends
from harness.control.children import Children, start_loadgens
from harness.spec.params import c_fields, defaults


class ProbeError(RuntimeError):
    pass


def probe_one(name: str, workdir: Path, timeout: float = 30.0) -> dict:
    counter = native.NATIVE_DIR / "libtlsh_count.so"
    cert, key = certs.make_cert(workdir, "ec")
    portfile = workdir / f"{name}.port"
    env = dict(os.environ)
    if counter.exists():
        env["LD_PRELOAD"] = str(counter)
    p = subprocess.Popen([sys.executable, "-m", "harness.stand.probe_child", name, cert, key, str(portfile)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                         cwd=str(results.ROOT), start_new_session=True)
    children = Children(workdir)
    lg = None
    try:
        deadline = time.monotonic() + timeout
        while not portfile.exists():
            if p.poll() is not None or time.monotonic() > deadline:
                err = p.stderr.read().strip().splitlines()
                return {"lib": name, "error": (err[-1] if err else "probe process died")}
            time.sleep(0.02)
        port, tls = (int(x) for x in portfile.read_text().split())
        lg, _ = start_loadgens(children, port, 1, 1, c_fields(defaults(
            window=1, load="churn", churn_every=1, tls=tls, duration=8, timeout=2.0), "loadgen"))
        out, err = p.communicate(timeout=timeout)
        if p.returncode != 0 or not out.strip():
            return {"lib": name, "error": (err.strip().splitlines() or ["probe failed"])[-1]}
        return json.loads(out.strip().splitlines()[-1])
    except subprocess.TimeoutExpired:
        return {"lib": name, "error": f"probe timed out after {timeout} s"}
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        children.stop_all(1.0)
        if lg:
            lg.close()


def verdicts(r: dict) -> dict:
    """Plain-words reading of one probe result (what the measurements say)."""
    if "error" in r:
        return {"alloc": "?", "lock": "?", "tls": "?", "arena": "?"}
    allocs = r["arena_allocs_during_handshakes"]
    acc = r["alloc_hook_accepted"]
    alloc = ("none" if acc is None else "refused" if acc is False else
             f"effective ({allocs} calls / {r['handshakes']} handshakes)" if allocs else "accepted, never called")
    direct = r.get("during_handshakes", {}).get("direct_allocs")
    if direct is not None and r.get("watched_code_ranges"):
        alloc += f"; {direct} past it"     # malloc/calloc/realloc called by the library itself
    n = r["lock_calls_during_handshakes"]
    if not r["lock_hook"]:
        lock = "none"
    elif r["lock_hook"] == "wrapped":
        lock = f"none; pointers wrapped ({n} calls)"
    else:
        lock = f"effective ({n} calls)" if n else "accepted, never called"
    tls_bytes = max((l["tls_segment_bytes"] or 0 for l in r["libraries"]), default=0)
    keys = r["init"]["key_create"] + r["during_handshakes"]["key_create"]
    tls = f"{tls_bytes} B ELF TLS, {keys} pthread keys"
    arena = "yes" if r["session_in_arena"] else "no"
    return {"alloc": alloc, "lock": lock, "tls": tls, "arena": arena}


def run(names: list[str] | None = None) -> list[dict]:
    avail = backends.availability()
    names = names or [n for n, (ok, _) in avail.items() if ok]
    out = []
    with tempfile.TemporaryDirectory(prefix="tlsh-probe-") as d:
        for n in names:
            if n not in avail:
                raise ProbeError(f"unknown library {n!r} (known: {', '.join(avail)})")
            if not avail[n][0]:
                out.append({"lib": n, "error": f"not built: {avail[n][1]}"})
                continue
            r = probe_one(n, Path(d))
            r["reading"] = verdicts(r)
            out.append(r)
    return out


COLS = [("library", 14), ("version", 24), ("allocator hook", 48), ("lock hook", 22),
        ("thread-local state", 28), ("session in arena", 16)]


def _row(r: dict) -> list[str]:
    v = r["reading"]
    return [r["lib"], r.get("version", r.get("error", ""))[:40], v["alloc"], v["lock"], v["tls"], v["arena"]]


def table(rows: list[dict]) -> str:
    cells = [_row(r) for r in rows]
    widths = [max([w] + [len(c[i]) for c in cells]) for i, (_, w) in enumerate(COLS)]
    lines = ["  ".join(f"{h:{w}}" for (h, _), w in zip(COLS, widths)).rstrip()]
    for c in cells:
        lines.append("  ".join(f"{x:{w}}" for x, w in zip(c, widths)).rstrip())
    for r in rows:
        if "caps" in r:
            made = {k: sum(r.get(w, {}).get(k, 0) for w in ("init", "ctx_new", "during_handshakes"))
                    for k in ("mutex_init", "rwlock_init", "pshared_requests")}
            lines.append(f"  {r['lib']}: {r['caps']['flags']}; creates {made['mutex_init']} mutexes, "
                         f"{made['rwlock_init']} rwlocks, "
                         + (f"{made['pshared_requests']} of them asked for PROCESS_SHARED"
                            if made['pshared_requests'] else "none asked for PROCESS_SHARED"))
    return "\n".join(lines)


def markdown(rows: list[dict]) -> str:
    out = ["| " + " | ".join(h for h, _ in COLS) + " |", "|" + "---|" * len(COLS)]
    out += ["| " + " | ".join(_row(r)) + " |" for r in rows]
    return "\n".join(out) + "\n"
