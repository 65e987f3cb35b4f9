"""Every catalogue scenario with the fix the servers shipped for it: each
`passes()` expectation of every scenario file (a library + mitigations), run
N times; prints whether it stayed clean, and for each scenario also how its
unfixed expectation (`fails(...)`) came out, so that a fix is only credited
where the failure reproduces without it.

    python bench/catalogue_fixed.py --repeat 2 [--duration 10] [--only a,b]
"""
import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.builds import backends  # noqa: E402  (no TLS library is loaded here)
from harness.spec import scenario  # noqa: E402
from harness.verdicts import V


def run(name, lib, mits, duration, out):
    args = [sys.executable, "-m", "harness", "run", name, "--lib", lib, "--mitigate", ",".join(mits),
            "--json", "-q", "--out", out]
    if duration:
        args += ["--duration", str(duration)]
    r = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=900)
    try:
        return json.loads(r.stdout)
    except json.JSONDecodeError:
        return {"verdict": V.ERROR, "reason": (r.stderr.strip().splitlines() or ["?"])[-1]}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--duration", type=float, default=0, help="override (0: the scenario's)")
    ap.add_argument("--only", default="")
    a = ap.parse_args()
    built = {n for n, (ok, _) in backends.availability().items() if ok}
    out = tempfile.mkdtemp(prefix="tlsh-fixed-")
    rows = []
    for sc in scenario.catalogue():
        if a.only and sc.name not in a.only.split(","):
            continue
        for key, exp in sc.expect.items():
            lib, _, m = key.partition("+")
            mits = [x for x in m.split(",") if x]
            if lib not in built:
                continue
            outs = [run(sc.name, lib, mits, a.duration, out) for _ in range(a.repeat)]
            good = sum(1 for o in outs if exp.check(o)[0] if o["verdict"] != V.ERROR)
            verd = ", ".join(o["verdict"] for o in outs)
            rows.append((sc.name, key, exp.outcome, f"{good}/{len(outs)}", verd,
                         next((o.get("reason", "")[:90] for o in outs if not exp.check(o)[0]), "")
                         if good < len(outs) else ""))
            print(" | ".join(rows[-1]), flush=True)
    print("\n| scenario | library+mitigations | expected | as expected | verdicts | first surprise |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
