"""Statistics of a set of runs: failure rates with Wilson intervals,
quantiles, the per-cell summary of a comparison, and the fields a
comparison keeps of each run."""
from __future__ import annotations

import math
import statistics

from harness.verdicts import FAILURES, V


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion k/n."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(0.0, c - h), min(1.0, c + h))


def quantile(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    i = q * (len(xs) - 1)
    lo, hi = math.floor(i), math.ceil(i)
    return xs[lo] + (xs[hi] - xs[lo]) * (i - lo)


def cell_stats(runs: list[dict]) -> dict:
    n = len(runs)
    verdicts: dict[str, int] = {}
    for o in runs:
        verdicts[o["verdict"]] = verdicts.get(o["verdict"], 0) + 1
    judged = [o for o in runs if o["verdict"] not in (V.UNSUPPORTED,)]
    k = sum(1 for o in judged if o["verdict"] in FAILURES)
    lo, hi = wilson(k, len(judged))
    ttf = [o["time_to_failure_ms"] for o in runs if o.get("time_to_failure_ms") is not None]
    healthy = [o for o in runs if o["verdict"] == V.PASS]
    rps = [o["replies_per_s"] for o in healthy]
    hs = [o["handshakes_client"] / o["load_seconds"] for o in healthy if o.get("load_seconds")]
    p50 = [o["latency_ms"]["p50"] for o in healthy if (o.get("latency_ms") or {}).get("p50") is not None]
    p99 = [o["latency_ms"]["p99"] for o in healthy if (o.get("latency_ms") or {}).get("p99") is not None]
    per_conn = [o["arena_bytes_per_conn"] for o in runs if o.get("arena_bytes_per_conn")]
    peaks = [o["arena"]["peak"] for o in runs if (o.get("arena") or {}).get("peak")]
    cpu_k = [o["stand_cpu_s"] / (o["replies"] / 1000) for o in healthy
             if o.get("stand_cpu_s") and o.get("replies")]
    return {
        "runs": n, "verdicts": verdicts, "failures": k, "judged": len(judged),
        "rate": k / len(judged) if judged else None, "rate_ci95": [lo, hi],
        "ttf_ms_median": quantile(ttf, 0.5), "ttf_ms_p90": quantile(ttf, 0.9),
        "replies_per_s": statistics.mean(rps) if rps else None,
        "replies_per_s_sd": statistics.stdev(rps) if len(rps) > 1 else 0.0 if rps else None,
        "handshakes_per_s": statistics.mean(hs) if hs else None,
        "latency_ms_p50": statistics.median(p50) if p50 else None,
        "latency_ms_p99": statistics.median(p99) if p99 else None,
        "arena_bytes_per_conn": statistics.median(per_conn) if per_conn else None,
        "arena_peak": max(peaks) if peaks else None,
        "cpu_s_per_1k_replies": statistics.median(cpu_k) if cpu_k else None,
        "unsupported": next((o["reason"] for o in runs if o["verdict"] == V.UNSUPPORTED), None),
    }


KEPT = ("verdict", "reason", "run_dir", "time_to_failure_ms", "replies", "replies_per_s",
        "latency_ms", "handshakes_client", "load_seconds", "arena", "arena_bytes_per_conn",
        "stand_cpu_s", "families", "bad", "lib_version", "memory", "exit_code")


def kept(o: dict) -> dict:
    """What a comparison keeps of one run's outcome (compare.json, campaign merge)."""
    return {k: o.get(k) for k in KEPT}
