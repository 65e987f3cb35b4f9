"""Every bug-report scenario (scenarios/reports/), N runs each, through
`tlsharness repro`: reproduction rate with its 95% interval, time to
failure median and p90, the families seen.

    python bench/reports.py --repeat 5 [--only opensips-1590,kamailio-1172]

Target (issue 5): each reproduces in at least 80% of runs with a median
time to failure of at most 30 s.  Runs one at a time; each run is bounded by
its scenario's duration.
"""
import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _ms(x) -> str:
    return "-" if x is None else f"{x:,.0f}"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--only", default="", help="comma-separated scenario names")
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    names = sorted(p.stem.replace("_", "-") for p in (ROOT / "scenarios" / "reports").glob("*.py"))
    if a.only:
        names = [n for n in names if n in a.only.split(",")]
    out = Path(a.out or tempfile.mkdtemp(prefix="tlsh-reports-"))
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in names:
        js = out / f"{n}.json"
        subprocess.run([sys.executable, "-m", "harness", "repro", n, "--repeat", str(a.repeat),
                        "--json", str(js), "--out", str(out / "runs"), "-q"], cwd=ROOT,
                       stdout=subprocess.DEVNULL)
        if not js.exists():
            rows.append((n, "did not run", "", "", "", ""))
            continue
        r = json.loads(js.read_text())
        ci = r.get("ci95") or [0, 0]
        fams = ", ".join(f"{k} {v}" for k, v in (r.get("families") or {}).items())
        verd = ", ".join(f"{k} {v}" for k, v in (r.get("verdicts") or {}).items())
        ok = r["rate"] >= 0.8 and (r.get("ttf_median_ms") or 1e9) <= 30000
        rows.append((n, f"{r['failed']}/{r['runs']} [{ci[0]:.0%}-{ci[1]:.0%}]",
                     _ms(r.get("ttf_median_ms")), _ms(r.get("ttf_p90_ms")), verd + "; " + fams,
                     "yes" if ok else "NO"))
        print(" | ".join(rows[-1]), flush=True)
    print("\n| report | reproduced (95% CI) | ttf median ms | ttf p90 ms | verdicts, families | target met |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print(f"\nrun folders and JSON summaries: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
