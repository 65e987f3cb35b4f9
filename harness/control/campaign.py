"""Campaigns: a matrix of runs (libraries x scenarios x mitigations x
repeats) written down as data, then run anywhere, resumed, and merged.

- `plan`: campaign.json, one spec per run with a stable id and its seed (the
  same arguments give the same ids: planning twice never duplicates a run).
- `run`: every spec not yet done, one at a time on this machine (embedded),
  or as Dask tasks on a scheduler (`--scheduler tcp://HOST:8786`), each task
  asking for the resource `stand=1` so that no machine runs two stress runs
  at once.  A run happens in a child `tlsharness run` process; its folder
  lands in runs/<spec id>/ (from a Dask worker: packed, then unpacked here).
  `--shard i/N` takes every N-th spec (GitHub Actions matrices).
- `merge`: shards' folders joined, the same report as `compare`, plus the
  time each machine spent.

A spec is done when runs/<id>/result.json exists; a task lost with its worker
is recorded as verdict `lost` (never a pass or a failure) and is run again by
the next `campaign run`.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from harness.control import compare
from harness.analysis import results
from harness.analysis.stats import kept
from harness.verdicts import V


class CampaignError(ValueError):
    pass


def spec_id(lib: str, scen: str, mits, rep: int, duration) -> str:
    key = f"{lib}|{scen}|{','.join(mits)}|{rep}|{duration or ''}"
    return hashlib.sha1(key.encode()).hexdigest()[:12]


def plan(libs, scenarios, mitigation_sets, repeat: int, duration) -> dict:
    """The campaign as data (checked like a comparison before anything is written)."""
    state = compare.new_state(libs, scenarios, mitigation_sets, repeat, duration)
    specs = []
    for i, c in enumerate(state["cells"]):
        for rep in range(repeat):
            sid = spec_id(c["lib"], c["scenario"], c["mitigations"], rep, duration)
            specs.append({"id": sid, "cell": i, "lib": c["lib"], "scenario": c["scenario"],
                          "mitigations": c["mitigations"], "rep": rep,
                          "seed": int(sid[:8], 16) % (2 ** 31)})
    return dict(state, tool="tlsharness campaign", specs=specs)


def load(d: Path) -> dict:
    try:
        state = json.loads((Path(d) / "campaign.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CampaignError(f"{d}: no campaign.json (plan one: tlsharness campaign plan)") from None
    except (OSError, ValueError) as e:
        raise CampaignError(f"{Path(d) / 'campaign.json'}: damaged ({type(e).__name__})") from None
    if not isinstance(state, dict) or not isinstance(state.get("specs"), list):
        raise CampaignError(f"{Path(d) / 'campaign.json'}: not a campaign (no specs)")
    return state


def parse_shard(text: str | None) -> tuple[int, int]:
    if not text:
        return 0, 1
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise CampaignError(f"--shard takes I/N, e.g. 0/4 (got {text!r})") from None
    if not (n >= 1 and 0 <= i < n):
        raise CampaignError(f"--shard I/N needs 0 <= I < N (got {text!r})")
    return i, n


def todo(d: Path, state: dict, shard=(0, 1)) -> list[dict]:
    i, n = shard
    return [s for k, s in enumerate(state["specs"]) if k % n == i
            and not (Path(d) / "runs" / s["id"] / "result.json").exists()]


def run_args(state: dict, spec: dict, out_dir: str) -> list[str]:
    """The `tlsharness run` arguments of one spec."""
    cell = compare.Cell(spec["lib"], spec["scenario"], tuple(spec["mitigations"]))
    _, args = compare.cell_config(cell, state.get("duration"), Path(out_dir))
    return ["run", *args, "--seed", str(spec["seed"]), "--json"]


def execute(args: list[str], timeout: float) -> dict:
    """One run in a child process (this process never loads a TLS library)."""
    t0 = time.time()
    try:
        r = subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True,
                           text=True, timeout=timeout, cwd=str(results.ROOT),
                           env=dict(os.environ, TLSH_HISTORY="off"))
        out = json.loads(r.stdout) if r.stdout.strip() else {
            "verdict": V.ERROR, "reason": (r.stderr.strip().splitlines() or ["no output"])[-1]}
    except subprocess.TimeoutExpired:
        out = {"verdict": V.ERROR, "reason": f"run did not end within {timeout:g} s"}
    except ValueError:
        out = {"verdict": V.ERROR, "reason": "run printed no outcome"}
    out["host"], out["seconds"] = socket.gethostname(), round(time.time() - t0, 2)
    return out


def _attempts_queue(name: str):
    from distributed import Queue
    return Queue(f"tlsh-attempts-{name}")


def run_packed(state: dict, spec: dict, campaign_name: str = "") -> bytes:
    """A Dask task: run one spec in a scratch folder on the worker, return it
    packed.  Each attempt announces itself first, so that an attempt lost with
    its worker (Dask runs the task again elsewhere) is known to the client."""
    import tempfile
    from distributed import get_worker
    me = get_worker().address
    try:
        _attempts_queue(campaign_name).put({"id": spec["id"], "worker": me,
                                            "host": socket.gethostname(), "t": time.time()})
    except Exception:                               # no queue: the run still counts
        pass
    with tempfile.TemporaryDirectory(prefix="tlsh-task-") as tmp:
        out = execute(run_args(state, spec, tmp), _timeout(state))
        out["worker"] = me
        (Path(tmp) / "result.json").write_text(json.dumps(out, default=str))
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            tar.add(tmp, arcname=".")
        return buf.getvalue()


def unpack(d: Path, spec: dict, blob: bytes) -> dict:
    dest = Path(d) / "runs" / spec["id"]
    part = dest.with_name(dest.name + ".part")
    shutil.rmtree(part, ignore_errors=True)
    part.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        tar.extractall(part, filter="data")
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(part, dest)
    return _fix_paths(dest)


def _fix_paths(dest: Path) -> dict:
    """The run folder inside runs/<id>/: point the result at it here."""
    res = json.loads((dest / "result.json").read_text())
    runs = [p for p in dest.iterdir() if p.is_dir()]
    if runs:
        res["run_dir"] = str(runs[0])
    (dest / "result.json").write_text(json.dumps(res, indent=2, default=str))
    return res


def _timeout(state: dict) -> float:
    return float(state.get("duration") or 60) + 300


def record(d: Path, spec: dict, out: dict) -> dict:
    dest = Path(d) / "runs" / spec["id"]
    dest.mkdir(parents=True, exist_ok=True)
    results.write_json(dest / "result.json", out)
    from harness.analysis import history
    if out.get("verdict") not in ("lost",):
        history.record(Path(d).parent, dict(out, lib=spec["lib"], mitigations=spec["mitigations"]),
                       "campaign", scenario=spec["scenario"], campaign=Path(d).name)
    return out


def run_embedded(d: Path, state: dict, specs: list[dict], progress=None) -> None:
    for k, spec in enumerate(specs):
        dest = Path(d) / "runs" / spec["id"]
        shutil.rmtree(dest, ignore_errors=True)          # a half-made attempt from an interruption
        out = execute(run_args(state, spec, str(dest)), _timeout(state))
        if out.get("verdict") == V.INTERRUPTED or out.get("exit_code") == 130:
            shutil.rmtree(dest, ignore_errors=True)
            raise KeyboardInterrupt
        record(d, spec, out)
        if progress:
            progress(k + 1, len(specs), spec, out)


def run_dask(d: Path, state: dict, specs: list[dict], scheduler: str, progress=None) -> None:
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise CampaignError("--scheduler needs Dask distributed (pip install distributed)") from None
    try:
        client = Client(scheduler, timeout=10)
    except (OSError, TimeoutError) as e:
        raise CampaignError(f"cannot reach the Dask scheduler {scheduler}: {e}") from None
    name = Path(d).name
    attempts: dict[str, list] = {}

    def note_lost(spec, winner):
        """Attempts of this spec on other workers than the one that finished it: lost."""
        try:
            q = _attempts_queue(name)
            while q.qsize():
                a = q.get(timeout=1)
                attempts.setdefault(a["id"], []).append(a)
        except Exception:
            pass
        for a in attempts.pop(spec["id"], []):
            if a["worker"] != winner:
                lost = Path(d) / "runs" / spec["id"]
                lost.mkdir(parents=True, exist_ok=True)
                results.write_json(lost / f"lost-{int(a['t'] * 1000)}.json",
                                   {"verdict": "lost", "reason": "worker lost during the run "
                                    "(Dask ran it again elsewhere)", **a})
    try:
        futs = {client.submit(run_packed, state, s, name, key=f"tlsh-{name}-{s['id']}",
                              resources={"stand": 1}, pure=False, retries=1): s for s in specs}
        for k, fut in enumerate(as_completed(futs)):
            spec = futs[fut]
            try:
                out = unpack(d, spec, fut.result())
                note_lost(spec, out.get("worker"))
            except Exception as e:             # KilledWorker and the like: the attempt was lost
                out = {"verdict": "lost", "reason": f"{type(e).__name__}: {str(e)[:200]}"}
                lost = Path(d) / "runs" / spec["id"]
                lost.mkdir(parents=True, exist_ok=True)    # kept, but the spec is not done
                results.write_json(lost / f"lost-{int(time.time() * 1000)}.json", out)
            else:
                record(d, spec, out)
            if progress:
                progress(k + 1, len(specs), spec, out)
    finally:
        client.close()


def merge(d: Path, others: list[Path]) -> dict:
    """Join shards into d; build the comparison state from every result."""
    state = load(d)
    for o in others:
        other = load(o)
        if [s["id"] for s in other["specs"]] != [s["id"] for s in state["specs"]]:
            raise CampaignError(f"{o}: a different campaign (its specs differ from {d}'s)")
        for spec in state["specs"]:
            src, dst = Path(o) / "runs" / spec["id"], Path(d) / "runs" / spec["id"]
            if (src / "result.json").exists() and not (dst / "result.json").exists():
                shutil.rmtree(dst, ignore_errors=True)
                shutil.copytree(src, dst)
                _fix_paths(dst)
    cells = [dict(c, runs=[]) for c in state["cells"]]
    timing: dict[str, dict] = {}
    for spec in state["specs"]:
        f = Path(d) / "runs" / spec["id"] / "result.json"
        if not f.exists():
            continue
        res = json.loads(f.read_text())
        cells[spec["cell"]]["runs"].append(kept(res))
        t = timing.setdefault(res.get("host") or "?", {"runs": 0, "seconds": 0.0})
        t["runs"] += 1
        t["seconds"] += res.get("seconds") or 0
    merged = {k: v for k, v in state.items() if k != "specs"} | {"cells": cells,
                                                                 "tool": "tlsharness compare"}
    results.write_json(Path(d) / "compare.json", merged)
    return {"done": sum(len(c["runs"]) for c in cells), "total": len(state["specs"]),
            "timing": timing}


def github_matrix(shards: int) -> dict:
    return {"include": [{"shard": f"{i}/{shards}"} for i in range(shards)]}
