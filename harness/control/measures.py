"""What a run measures, from its samples and /proc: the sample records
written to samples.jsonl, CPU of the stand and the load generators, arena
use per connection, and small helpers for the evidence."""
from __future__ import annotations

import os
from pathlib import Path

from harness.watchdog import Verdict, Watchdog


def sample_record(s: dict, t0: int, wd: Watchdog) -> dict:
    t = s["t"]
    return {
        "t": round((t - t0) / 1e9, 3),
        "lg": {k: s["lg"][k] for k in ("sent", "answered", "bad", "timed_out", "handshakes",
                                       "conn_errors")},
        "arena": {"in_use": s["hdr"]["arena"]["in_use"], "peak": s["hdr"]["arena"]["peak"]},
        "cross_handoffs": s["hdr"]["cross_handoffs"],
        "workers": [{"slot": w["slot"], "pid": w["pid"], "state": w["state"], "act": w["activity"],
                     "age_ms": round((t - w["since_ns"]) / 1e6, 1), "req": w["requests"],
                     "hs": w["handshakes"], "err": w["errors"], "lock_wait": w["lock_waiting"],
                     "cpu": s.get("cpu", {}).get(w["pid"]),
                     "pstate": (s["procs"].get(w["pid"]) or {}).get("state")}
                    for w in s["slots"]],
    }


def stand_cpu(s: dict) -> float:
    """CPU seconds used so far by the stand's processes (supervisor, listener, workers),
    each as of its last read."""
    if "cpu" in s:
        return sum(s["cpu"].values())
    return sum(p.get("run_ns", 0) / 1e9 or p["cpu_s"] for p in s["procs"].values())


def per_conn(s: dict | None, baseline: int) -> int | None:
    """Arena bytes per open connection at the end: (in use - what was in use
    before any connection) / open connections.  None in private memory."""
    if not s or not s["hdr"]["arena_size"] or not s["hdr"]["conns_open"]:
        return None
    return int((s["hdr"]["arena"]["in_use"] - baseline) / s["hdr"]["conns_open"])


def top(v: Verdict, pid: int, n: int = 6) -> list[str]:
    for st in v.stacks:
        if st["pid"] == pid:
            return st["top"][:n]
    return []


def tail(path: Path, n: int = 1) -> str:
    try:
        lines = [l for l in path.read_text(errors="replace").splitlines() if l.strip()]
        return " | ".join(lines[-n:]) or "(no output)"
    except OSError:
        return "(no log)"


def cpu_of(pids: list[int]) -> float | None:
    """CPU seconds (user + system) the processes used, from /proc (a process
    that exited and is not reaped yet still has its times)."""
    tick, total = os.sysconf("SC_CLK_TCK"), 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        total += int(rest[11]) + int(rest[12])
    return round(total / tick, 2)


def load_figures(lg, sampler, out: dict, load_s: float) -> dict:
    """What a run costs the server: latency quantiles of the answered requests,
    new TLS connections per second, and the server's CPU per handshake and per
    1,000 replies (schedstat of its processes since they started, so the
    start-up's own CPU is in it)."""
    from harness.segments import hist_quantile
    hist = lg.latency_hist()
    cpu_s = sum(max(tr.run_ns, 0) for tr in sampler.tracks.values()) / 1e9
    hs = out.get("handshakes_client") or 0
    return {"latency_ms": {"p50": hist_quantile(hist, 0.5), "p99": hist_quantile(hist, 0.99)},
            "new_conns_per_s": round(hs / load_s, 1) if load_s else 0,
            "server_cpu_s": round(cpu_s, 3),
            "server_cpu_ms_per_handshake": round(cpu_s * 1e3 / hs, 3) if hs else None,
            "server_cpu_s_per_1k_replies": (round(cpu_s * 1e3 / out["replies"], 4)
                                            if out.get("replies") else None)}
