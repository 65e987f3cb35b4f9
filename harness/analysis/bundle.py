"""`tlsharness bundle FOLDER`: a failing run (or a shrink of one) as a bug
report a server's or library's maintainer can read: bundle.md (Markdown, to
paste into an issue tracker) and bundle-<id>.tar.gz (bundle.md and the run's
records: manifest, outcome, verdict, stacks, logs; the shrink's state and
scenario file).

It reads what the runs recorded and judges nothing again.  This machine's
paths are replaced in the text and in the archived files (<results>,
<tlsharness>, <shrink>, ~, <path>) unless keep_paths.
"""
from __future__ import annotations

import io
import json
import tarfile
import time
from pathlib import Path

from harness.analysis import bundle_facts as facts

TEXT_FILES = ("manifest.json", "outcome.json", "verdict.json", "bad-replies.json", "roles.json",
              "stand.log", "server.log", "kamailio.cfg", "tls.cfg", "opensips.cfg", "probe.json")
MAX_STACK_LINES = 30
MAX_FILE = 16 << 20


class BundleError(ValueError):
    pass


def _json(p: Path) -> dict:
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise BundleError(f"{p}: cannot read it ({getattr(e, 'strerror', None) or e})") from None


def sources(folder: Path) -> dict:
    """What the bundle is made of: the run whose evidence it shows, the original run,
    and the shrink (its state) when the folder is a shrink's."""
    if (folder / "shrink.json").is_file():
        st = _json(folder / "shrink.json")
        res = st.get("result") or {}
        if not res.get("minimal"):
            raise BundleError(f"{folder}: the shrink has no result yet (run `tlsharness shrink` "
                              "again to finish it)")
        origin = Path(st["origin"])
        evidence = _evidence_run(st, res["minimal"]["config"])
        run = evidence or origin
        return {"run": run, "origin": origin, "shrink": st, "folder": folder}
    if (folder / "manifest.json").is_file() and (folder / "outcome.json").is_file():
        return {"run": folder, "origin": folder, "shrink": None, "folder": folder}
    raise BundleError(f"{folder}: neither a run folder (manifest.json, outcome.json) nor a shrink "
                      "folder (shrink.json)")


def _evidence_run(st: dict, config: dict) -> Path | None:
    """The first run of the minimal configuration that failed as the original did."""
    for c in st["candidates"].values():
        if c["config"] != config:
            continue
        for o in c["runs"]:
            same = st["match"] in (o.get("families") or []) or st["match"] == f"verdict {o.get('verdict')}"
            if same and o.get("run_dir") and Path(o["run_dir"], "outcome.json").is_file():
                return Path(o["run_dir"])
    return None


def _proc_line(p: dict, detect_ns) -> str:
    who = " ".join(str(x) for x in (p.get("role") or p.get("as") or "process",
                                    f"slot {p['slot']}" if p.get("slot") is not None else "",
                                    f"pid {p.get('pid')}") if x)
    bits = [f"state {p['state']}" if p.get("state") else "",
            f"cpu {p['cpu']}" if p.get("cpu") is not None else "",
            f"wchan {p['wchan']}" if p.get("wchan") else "",
            f"activity {p['activity']}" if p.get("activity") else ""]
    fx = p.get("futex")
    if fx:
        where = "inside the shared arena" if fx.get("in_arena") else "outside the arena"
        bits.append(f"futex {fx.get('addr')} op {fx.get('op')} "
                    f"({'PRIVATE' if fx.get('private') else 'shared'}), {where}")
    if p.get("lock_held", -1) not in (-1, None):
        bits.append(f"holds lock {p['lock_held']}")
    if p.get("lock_waiting", -1) not in (-1, None):
        bits.append(f"waits for lock {p['lock_waiting']}")
    if detect_ns and p.get("since_ns"):
        bits.append(f"stuck {(detect_ns - p['since_ns']) / 1e6:,.0f} ms when judged")
    why = f": {p['why']}" if p.get("why") else ""
    return f"- {who}{why} — " + ", ".join(b for b in bits if b)


def stuck_of(verdict: dict, outcome: dict) -> list[dict]:
    procs = [p for k in ("blocked", "spinning", "stopped", "crashed") for p in verdict.get(k) or []
             if isinstance(p, dict)]
    return procs or [p for p in outcome.get("stuck") or [] if isinstance(p, dict)]


def stacks_of(run: Path, procs: list[dict]) -> list[Path]:
    d = run / "stacks"
    if not d.is_dir():
        return []
    files = sorted(d.iterdir())
    pids = {str(p.get("pid")) for p in procs}
    picked = [f for f in files if f.suffix == ".txt" and
              (f.stem.rsplit("-", 1)[-1] in pids or f.name.startswith("crash-"))]
    return picked or [f for f in files if f.suffix == ".txt"][:4]


def _rate_lines(src: dict, man: dict, out: dict, kind: str) -> list[str]:
    st = src["shrink"]
    match = (out.get("families") or [out.get("verdict")])[0]
    if st:
        r = st["result"]
        lines = []
        for name in ("original", "minimal"):
            m = r[name]
            lo, hi = m["ci95"]
            ttf = "-" if m["ttf_median_ms"] is None else f"{m['ttf_median_ms']:,.0f} ms"
            lines.append(f"- {name}: {r['match']} in {m['matched']}/{m['runs']} runs "
                         f"({lo:.0%}–{hi:.0%} at 95%), median time to failure {ttf}")
        lines.append(f"- shrink: {r['runs']} runs, {r['elapsed_s']:.0f} s, {r['status']}")
        return lines
    cfg = dict(man.get("config") or {})
    lib = out.get("lib") or f"target:{out.get('target')}"
    h = facts.history_rate(Path(src["run"]).parent, lib, facts.params_of(cfg, kind),
                           (out.get("families") or [None])[0])
    if not h or h["runs"] < 2:
        return ["- only this run is known (no repeat of this configuration in the history; "
                "`tlsharness repro` or `tlsharness shrink` measures a rate)"]
    lo, hi = h["ci95"]
    return [f"- {match}: {h['matched']}/{h['runs']} runs of this configuration in the history "
            f"({lo:.0%}–{hi:.0%} at 95%; {', '.join(h['kinds'])})"]


def _versions(man: dict, out: dict, run: Path) -> list[str]:
    lines = []
    if out.get("target"):
        cmd = man.get("command") or []
        lines.append(f"- server: {out['target']}" + (f" (`{cmd[0]}`)" if cmd else ""))
        for k, v in (out.get("server_build") or {}).items():
            lines.append(f"  - {k}: {v}")
    else:
        lines.append(f"- library: {man.get('lib')} — {man.get('lib_version') or out.get('lib_version')}")
        b = facts.lib_build(man.get("lib") or "")
        if b:
            lines.append("  - adapter build: " + ", ".join(f"{k} {v}" for k, v in b.items()
                                                          if v not in (None, "")))
        lines.append(f"  - memory: {out.get('memory')}; load generator client: {out.get('client')}")
    probe = run / "probe.json"
    if probe.is_file():
        lines.append("  - probe: " + json.dumps(_json(probe), default=str)[:600])
    m = man.get("machine") or {}
    from harness import __version__
    lines.append(f"- tlsharness {__version__} at git {str(man.get('git_revision') or '?')[:12]}; "
                 f"Linux {m.get('kernel')} {m.get('machine')}, {m.get('cpus')} CPUs, "
                 f"Python {m.get('python')}")
    return lines


def _cure_lines(src: dict, man: dict, out: dict, kind: str) -> list[str]:
    cfg = dict(man.get("config") or {})
    lib = out.get("lib") or f"target:{out.get('target')}"
    found = facts.cures(Path(src["origin"]).parent, lib, out.get("scenario"), cfg, kind,
                        list(cfg.get("mitigations") or out.get("mitigations") or []))
    if not found:
        return ["- none measured in the history (`tlsharness mitigations --lib LIB` measures them)"]
    return [f"- `{','.join(c['mitigations'])}`: no failure in {c['runs']} judged runs "
            f"({', '.join(c['kinds'])})" for c in found]


def markdown(src: dict) -> str:
    run = Path(src["run"])
    man, out = _json(run / "manifest.json"), _json(run / "outcome.json")
    verdict = _json(run / "verdict.json") if (run / "verdict.json").is_file() else {}
    kind = "target" if out.get("target") else "run"
    fams = verdict.get("families") or [{"family": f} for f in out.get("families") or []]
    title = fams[0]["family"] if fams else out.get("verdict")
    what = out.get("target") or f"{man.get('lib')} ({man.get('lib_version')})"
    cmd = src["shrink"]["result"]["minimal"]["command"] if src["shrink"] else \
        out.get("command") or man.get("command")
    text = [f"# {title}: {out.get('verdict')} with {what}", "",
            f"Found and reduced with tlsharness; run `{run.name}`.", "", "## Minimal command", "",
            "```", cmd if isinstance(cmd, str) else " ".join(map(str, cmd or [])), "```", ""]
    if src["shrink"]:
        text += [f"Shrunk from: `{src['shrink']['result']['original']['command']}`", ""]
    text += ["## How often", "", *_rate_lines(src, man, out, kind), "",
             "## Versions and build", "", *_versions(man, out, run), "",
             "## Verdict and evidence", "", f"**{out.get('verdict')}**: {out.get('reason')}", ""]
    if out.get("time_to_failure_ms") is not None:
        text += [f"- time to failure: {out['time_to_failure_ms']:,.0f} ms after the load started", ""]
    procs = stuck_of(verdict, out)
    text += [_proc_line(p, verdict.get("detect_ns")) for p in procs]
    text += [f"- evidence: {e}" for e in (verdict.get("evidence") or out.get("log_evidence") or [])[:10]]
    for f in fams:
        text += ["", f"Family **{f['family']}**" + (f": {f['explain']}" if f.get("explain") else "")]
        text += [f"- {e}" for e in f.get("evidence") or []]
        if f.get("refs"):
            text.append(f"- matches: {', '.join(f['refs'])}")
    text += ["", "## Stacks of the stuck processes", ""]
    for s in stacks_of(run, procs):
        lines = s.read_text(errors="replace").splitlines()
        text += [f"`{s.name}`", "", "```", *lines[:MAX_STACK_LINES],
                 *([f"... {len(lines) - MAX_STACK_LINES} more lines in the archive"]
                   if len(lines) > MAX_STACK_LINES else []), "```", ""]
    text += ["## Mitigation that cured it", "", *_cure_lines(src, man, out, kind), ""]
    return "\n".join(text)


def _members(src: dict) -> list[tuple[Path, str]]:
    run, origin = Path(src["run"]), Path(src["origin"])
    out = [(run / n, f"run/{n}") for n in TEXT_FILES if (run / n).is_file()]
    out += [(f, f"run/{f.name}") for f in sorted(run.glob("loadgen-*.log"))]
    if (run / "stacks").is_dir():
        out += [(f, f"run/stacks/{f.name}") for f in sorted((run / "stacks").iterdir()) if f.is_file()]
    if origin != run:
        out += [(origin / n, f"original/{n}") for n in ("manifest.json", "outcome.json", "verdict.json")
                if (origin / n).is_file()]
    if src["shrink"]:
        out += [(src["folder"] / n, f"shrink/{n}") for n in ("shrink.json", "scenario.py")
                if (src["folder"] / n).is_file()]
    return [(p, a) for p, a in out if p.stat().st_size <= MAX_FILE]


def make(folder: Path, out_dir: Path | None = None, keep_paths: bool = False) -> dict:
    """Write bundle.md and bundle-<id>.tar.gz; returns their paths and the member count."""
    if not folder.is_dir():
        raise BundleError(f"{folder}: not a folder")
    src = sources(folder.absolute())
    src["folder"] = folder.absolute()
    roots = [(str(Path(src["origin"]).parent), "<results>")]
    if src["shrink"]:
        roots.append((str(src["folder"]), "<shrink>"))
    scrub = facts.scrubber(facts.default_pairs(Path(src["origin"]).parent, roots[1:]), keep_paths)
    text = scrub(markdown(src))
    dest = (out_dir or src["folder"]).absolute()
    if out_dir is not None and not dest.parent.is_dir():
        raise BundleError(f"--out {out_dir}: no folder {dest.parent}")
    dest.mkdir(exist_ok=True)
    md = dest / "bundle.md"
    md.write_text(text)
    name = f"bundle-{Path(src['run']).name}"
    arc = dest / f"{name}.tar.gz"
    members = [(None, "bundle.md"), *_members(src)]
    with tarfile.open(arc, "w:gz") as tar:
        for path, arcname in members:
            data = text.encode() if path is None else path.read_bytes()
            if path is not None and not keep_paths:
                data = scrub(data.decode(errors="replace")).encode()
            info = tarfile.TarInfo(f"{name}/{arcname}")
            info.size, info.mtime, info.mode = len(data), int(time.time()), 0o644
            tar.addfile(info, io.BytesIO(data))
    return {"markdown": md, "archive": arc, "files": len(members)}
