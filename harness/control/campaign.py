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

A spec is done when runs/<id>/result.json holds a verdict other than
`error` (a run the tool could not do is run again); a task lost with its worker
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
from harness.builds import safepath
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


def folder(path) -> Path:
    """The campaign folder of PATH: the folder itself, or the folder of its
    campaign.json when the manifest file is given."""
    d = Path(path).absolute()
    if d.is_file():
        if d.name != "campaign.json":
            raise CampaignError(f"{d}: a file, not a campaign folder (give the folder or its "
                                "campaign.json)")
        d = d.parent
    return d


def load(d: Path) -> dict:
    """The manifest of campaign folder d (or of d/../campaign.json), checked
    before anything is written: every run id a plain name (a manifest travels
    between machines: an id is never a path), ids unique."""
    d = folder(d)
    try:
        state = json.loads((d / "campaign.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CampaignError(f"{d}: no campaign.json (plan one: tlsharness campaign plan)") from None
    except (OSError, ValueError) as e:
        raise CampaignError(f"{d / 'campaign.json'}: damaged ({type(e).__name__})") from None
    if not isinstance(state, dict) or not isinstance(state.get("specs"), list):
        raise CampaignError(f"{d / 'campaign.json'}: not a campaign (no specs)")
    seen: set = set()
    for k, spec in enumerate(state["specs"]):
        _check_spec(d / "campaign.json", k, spec, state)
        if spec["id"] in seen:
            raise CampaignError(f"{d / 'campaign.json'}: run id {spec['id']!r} appears twice")
        seen.add(spec["id"])
    return state


def _check_spec(f: Path, k: int, spec, state: dict) -> None:
    if not isinstance(spec, dict):
        raise CampaignError(f"{f}: spec {k} is not an object")
    try:
        safepath.check_name(spec.get("id"), f"spec {k}: run id")
    except safepath.BadName as e:
        raise CampaignError(f"{f}: {e}") from None
    mits = spec.get("mitigations", [])
    if isinstance(mits, str):                  # a hand-edited "pshared,prefork-thread"
        spec["mitigations"] = mits = [m for m in mits.split(",") if m and m != "none"]
    ok = (isinstance(spec.get("lib"), str) and isinstance(spec.get("scenario"), str)
          and isinstance(mits, list) and all(isinstance(m, str) for m in mits)
          and isinstance(spec.get("seed"), int) and isinstance(spec.get("rep", 0), int)
          and isinstance(spec.get("cell"), int)
          and 0 <= spec["cell"] < len(state.get("cells") or []))
    if not ok:
        raise CampaignError(f"{f}: spec {k} ({spec.get('id')}): not the shape of a run "
                            "(lib, scenario, mitigations list, seed, cell)")


def run_dir(d: Path, spec: dict) -> Path:
    """runs/<id> of a spec, checked to lie inside the campaign's runs/."""
    dest = Path(d) / "runs" / safepath.check_name(spec["id"], "run id")
    safepath.must_be_inside(Path(d) / "runs", dest, "run folder")
    return dest


def result_of(dest: Path) -> dict | None:
    """The result of a finished run in DEST; None when there is none, it is
    unreadable, or the run ended `error` (the tool could not run it: it is
    not done, it is run again, and it never counts in a failure rate)."""
    try:
        res = json.loads((Path(dest) / "result.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(res, dict) or res.get("verdict") in (V.ERROR, "lost", None):
        return None
    return res


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
            and result_of(run_dir(d, s)) is None]


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
    dest = run_dir(d, spec)
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
    dest = run_dir(d, spec)
    dest.mkdir(parents=True, exist_ok=True)
    results.write_json(dest / "result.json", out)
    from harness.analysis import history
    if out.get("verdict") not in ("lost",):
        history.record(Path(d).parent, dict(out, lib=spec["lib"], mitigations=spec["mitigations"]),
                       "campaign", scenario=spec["scenario"], campaign=Path(d).name)
    return out


def run_embedded(d: Path, state: dict, specs: list[dict], progress=None) -> None:
    for k, spec in enumerate(specs):
        dest = run_dir(d, spec)
        shutil.rmtree(dest, ignore_errors=True)          # a half-made attempt from an interruption
        out = execute(run_args(state, spec, str(dest)), _timeout(state))
        if out.get("verdict") == V.INTERRUPTED or out.get("exit_code") in (129, 130, 143):
            shutil.rmtree(dest, ignore_errors=True)
            raise KeyboardInterrupt
        record(d, spec, out)
        if progress:
            progress(k + 1, len(specs), spec, out)


def check_scheduler(address: str) -> None:
    """--scheduler: a Dask address, tcp://HOST:PORT (or tls://), checked
    before anything is imported or started."""
    from urllib.parse import urlsplit
    try:
        u = urlsplit(address)
        ok = u.scheme in ("tcp", "tls") and bool(u.hostname) and u.port is not None \
            and not u.path.strip("/") and not u.query
    except ValueError:
        ok = False
    if not ok:
        raise CampaignError(f"--scheduler must be a Dask address tcp://HOST:PORT "
                            f"(got {address!r})")


def run_dask(d: Path, state: dict, specs: list[dict], scheduler: str, progress=None) -> None:
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise CampaignError("--scheduler needs Dask distributed (pip install distributed)") from None
    check_scheduler(scheduler)
    try:
        client = Client(scheduler, timeout=10)
    except Exception as e:               # OSError, TimeoutError, ValueError of a bad address
        raise CampaignError(f"cannot reach the Dask scheduler {scheduler}: "
                            f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
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
                lost = run_dir(d, spec)
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
                lost = run_dir(d, spec)
                lost.mkdir(parents=True, exist_ok=True)    # kept, but the spec is not done
                results.write_json(lost / f"lost-{int(time.time() * 1000)}.json", out)
            else:
                record(d, spec, out)
            if progress:
                progress(k + 1, len(specs), spec, out)
    finally:
        client.close()


def merge(d: Path, others: list[Path]) -> dict:
    """Join shards into d; build the comparison state from every result.
    A run that ended `error` is neither done nor in any failure rate."""
    d = folder(d)
    state = load(d)
    for o in others:
        o = folder(o)
        other = load(o)
        if [s["id"] for s in other["specs"]] != [s["id"] for s in state["specs"]]:
            raise CampaignError(f"{o}: a different campaign (its specs differ from {d}'s)")
        for spec in state["specs"]:
            src, dst = run_dir(o, spec), run_dir(d, spec)
            if result_of(src) is not None and result_of(dst) is None:
                shutil.rmtree(dst, ignore_errors=True)
                shutil.copytree(src, dst)
                _fix_paths(dst)
    cells = [dict(c, runs=[]) for c in state["cells"]]
    timing: dict[str, dict] = {}
    errors = 0
    for spec in state["specs"]:
        res = result_of(run_dir(d, spec))
        if res is None:
            errors += (run_dir(d, spec) / "result.json").exists()
            continue
        cells[spec["cell"]]["runs"].append(kept(res))
        t = timing.setdefault(res.get("host") or "?", {"runs": 0, "seconds": 0.0})
        t["runs"] += 1
        t["seconds"] += res.get("seconds") or 0
    merged = {k: v for k, v in state.items() if k != "specs"} | {"cells": cells,
                                                                 "tool": "tlsharness compare"}
    results.write_json(Path(d) / "compare.json", merged)
    return {"done": sum(len(c["runs"]) for c in cells), "total": len(state["specs"]),
            "timing": timing, "errors": errors}


def github_matrix(shards: int) -> dict:
    return {"include": [{"shard": f"{i}/{shards}"} for i in range(shards)]}
