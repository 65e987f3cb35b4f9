"""Reports derived from the JSON (never the other way round): plots with
matplotlib, a self-contained report.html (images embedded, no network) and
report.md, for one run or for a comparison; results/index.html lists all."""
from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

from harness.verdicts import V


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    _plt().close(fig)
    return base64.b64encode(buf.getvalue()).decode()


class ReportError(ValueError):
    """A results folder that cannot be reported (one line)."""


def read_samples(path: Path) -> tuple[list[dict], int]:
    """samples.jsonl: the good lines, and how many were damaged (truncated,
    not UTF-8, not JSON objects) and skipped."""
    good, bad = [], 0
    try:
        raw = path.read_bytes()
    except OSError:
        return [], 0
    for line in raw.splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            bad += 1
            continue
        if isinstance(rec, dict):
            good.append(rec)
        else:
            bad += 1
    return good, bad


def timeline(run_dir: Path) -> str | None:
    """Replies/s, per-worker CPU heatmap and activities, onset and detection
    (stand runs; None for anything else or too little data)."""
    samples, _ = read_samples(run_dir / "samples.jsonl")
    if len(samples) < 2 or not all("workers" in x and "lg" in x for x in samples):
        return None
    try:
        return _timeline(run_dir, samples)
    except (KeyError, TypeError, ValueError, IndexError):
        return None


def _timeline(run_dir: Path, samples: list[dict]) -> str | None:
    out = read_json(run_dir / "outcome.json") or {}
    plt = _plt()
    t = [s["t"] for s in samples]
    rate = [0.0] + [(b["lg"]["answered"] - a["lg"]["answered"]) / max(b["t"] - a["t"], 1e-3)
                    for a, b in zip(samples, samples[1:])]
    workers = [w["slot"] for w in samples[-1]["workers"] if w["slot"] > 0]
    cpu = [[0.0] * len(samples) for _ in workers]
    act = [[0] * len(samples) for _ in workers]
    # the activities in the order they were first seen (the names are the samples' own)
    acts = list(dict.fromkeys([w["act"] for s in samples for w in s["workers"]
                               if w["state"] == "alive"] + ["exited"]))
    for j, (a, b) in enumerate(zip(samples, samples[1:]), start=1):
        wa = {w["slot"]: w for w in a["workers"]}
        for i, w in enumerate(b["workers"][1:len(workers) + 1]):
            prev = wa.get(w["slot"])
            if prev and w.get("cpu") is not None and prev.get("cpu") is not None:
                cpu[i][j] = (w["cpu"] - prev["cpu"]) / max(b["t"] - a["t"], 1e-3)
            act[i][j] = acts.index(w["act"] if w["state"] == "alive" else "exited")
    fig, ax = plt.subplots(3, 1, figsize=(9, 6.5), sharex=True,
                           gridspec_kw={"height_ratios": [2, 2, 2]})
    ax[0].plot(t, rate, color="#2b6cb0")
    ax[0].set_ylabel("replies/s")
    ext = [t[0], t[-1], len(workers) + 0.5, 0.5]
    im = ax[1].imshow(cpu, aspect="auto", extent=ext, cmap="inferno", vmin=0, vmax=1,
                      interpolation="nearest")
    ax[1].set_ylabel("worker CPU")
    fig.colorbar(im, ax=ax[1], pad=0.01, fraction=0.03)
    ax[2].imshow(act, aspect="auto", extent=ext, cmap="tab20", vmin=0, vmax=19, interpolation="nearest")
    ax[2].set_ylabel("activity")
    ax[2].set_xlabel("seconds")
    from matplotlib.patches import Patch
    cmap = plt.get_cmap("tab20")
    used = sorted({a for row in act for a in row})
    ax[2].legend(handles=[Patch(color=cmap(a / 19), label=acts[a]) for a in used],
                 fontsize=7, ncol=min(6, len(used)), loc="upper center", bbox_to_anchor=(0.5, -0.35),
                 frameon=False)
    t0 = out.get("t0_ns")
    verdict = run_dir / "verdict.json"
    if t0 and verdict.exists():
        v = read_json(verdict) or {}
        for key, color, label in (("onset_ns", "#c53030", "onset"), ("detect_ns", "#dd6b20", "detected")):
            if v.get(key):
                x = (v[key] - t0) / 1e9
                for a in ax:
                    a.axvline(x, color=color, lw=1.2, ls="--")
                ax[0].text(x, ax[0].get_ylim()[1] * 0.92, " " + label, color=color, fontsize=8)
    fault = (((read_json(run_dir / "manifest.json") or {}).get("config") or {}).get("fault") or {})
    if fault.get("kind", "none") != "none":
        x = fault.get("after_ms", 500) / 1000
        for a in ax:
            a.axvspan(x, t[-1], color="#a0aec0", alpha=0.15)
    ax[0].set_title(f"{out.get('lib')}: {out['verdict']} — {out.get('reason', '')[:90]}", fontsize=9)
    return _png(fig)


def matrix_plots(state: dict) -> dict[str, str]:
    plt = _plt()
    cells = state["cells"]
    rows = sorted({(c["lib"], ",".join(c["mitigations"]) or "none") for c in cells})
    cols = list(dict.fromkeys(c["scenario"] for c in cells))
    grid = [[float("nan")] * len(cols) for _ in rows]
    text = [[""] * len(cols) for _ in rows]
    for c in cells:
        s = c.get("stats") or {}
        i, j = rows.index((c["lib"], ",".join(c["mitigations"]) or "none")), cols.index(c["scenario"])
        if s.get("unsupported"):
            text[i][j] = V.UNSUPPORTED
        elif s.get("rate") is not None:
            grid[i][j] = s["rate"]
            text[i][j] = f"{s['failures']}/{s['judged']}\n" + ", ".join(
                f"{k} {n}" for k, n in sorted(s["verdicts"].items(), key=lambda kv: -kv[1])[:2])
    out = {}
    fig, ax = plt.subplots(figsize=(1.9 * len(cols) + 3, 0.8 * len(rows) + 1.5))
    im = ax.imshow(grid, cmap="RdYlGn_r", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(cols)), cols, rotation=20, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), [f"{l} + {m}" if m != "none" else l for l, m in rows], fontsize=8)
    for i in range(len(rows)):
        for j in range(len(cols)):
            ax.text(j, i, text[i][j], ha="center", va="center", fontsize=7)
    fig.colorbar(im, ax=ax, label="failure rate")
    ax.set_title("verdicts: failed runs / judged runs")
    out["heatmap"] = _png(fig)
    for key, label, err in (("replies_per_s", "healthy replies/s", "replies_per_s_sd"),
                            ("arena_bytes_per_conn", "arena bytes per connection", None)):
        vals = [(c, (c.get("stats") or {}).get(key)) for c in cells]
        vals = [(c, v) for c, v in vals if v]
        if not vals:
            continue
        fig, ax = plt.subplots(figsize=(9, 0.35 * len(vals) + 1.2))
        names = [f"{c['lib']} | {c['scenario']} | {','.join(c['mitigations']) or 'none'}" for c, _ in vals]
        errs = [(c["stats"].get(err) or 0) for c, _ in vals] if err else None
        ax.barh(names, [v for _, v in vals], xerr=errs, color="#4299e1")
        ax.tick_params(axis="y", labelsize=7)
        ax.set_xlabel(label)
        ax.invert_yaxis()
        out[key] = _png(fig)
    return out


CSS = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#1a202c}"
       "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #cbd5e0;padding:3px 7px}"
       "th{background:#edf2f7}.fail{background:#fed7d7}.pass{background:#c6f6d5}"
       "img{max-width:100%}code{background:#edf2f7;padding:1px 4px}")


def _fmt(x, nd=0):
    return "" if x is None else f"{x:,.{nd}f}"


def compare_report(d: Path) -> tuple[Path, Path]:
    state = read_json(d / "compare.json")
    if state is None or not isinstance(state.get("cells"), list):
        raise ReportError(f"{d / 'compare.json'}: damaged (truncated, not UTF-8, not JSON or "
                          "not a comparison)")
    from harness.analysis.stats import cell_stats
    for c in state["cells"]:
        c["stats"] = cell_stats(c["runs"])
    plots = matrix_plots(state)
    head = ["library", "scenario", "mitigations", "runs", "verdicts", "failure rate (95% CI)",
            "ttf median / p90 ms", "replies/s", "p50 / p99 ms", "arena B/conn", "CPU s / 1k replies"]
    rows, md = [], ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in state["cells"]:
        s = c["stats"]
        rate = ("unsupported: " + s["unsupported"].split(": ", 1)[-1][:90] if s["unsupported"] else
                f"{s['rate']:.0%} ({s['rate_ci95'][0]:.0%}–{s['rate_ci95'][1]:.0%})" if s["rate"] is not None else "")
        cols = [c["lib"], c["scenario"], ",".join(c["mitigations"]) or "none", str(s["runs"]),
                ", ".join(f"{k} {n}" for k, n in s["verdicts"].items()), rate,
                f"{_fmt(s['ttf_ms_median'])} / {_fmt(s['ttf_ms_p90'])}" if s["ttf_ms_median"] is not None else "",
                _fmt(s["replies_per_s"]),
                f"{_fmt(s['latency_ms_p50'], 2)} / {_fmt(s['latency_ms_p99'], 2)}" if s["latency_ms_p50"] else "",
                _fmt(s["arena_bytes_per_conn"]), _fmt(s["cpu_s_per_1k_replies"], 3)]
        cls = "fail" if s["failures"] else "" if s["unsupported"] or not s["runs"] else V.PASS
        rows.append(f"<tr class='{cls}'>" + "".join(f"<td>{html.escape(x)}</td>" for x in cols) + "</tr>")
        md.append("| " + " | ".join(cols) + " |")
    timelines = []
    for c in state["cells"]:
        picks = [o for o in c["runs"] if o["verdict"] != V.PASS][:1] + [o for o in c["runs"] if o["verdict"] == V.PASS][:1]
        for o in picks:
            if o.get("run_dir") and Path(o["run_dir"], "samples.jsonl").exists():
                png = timeline(Path(o["run_dir"]))
                if png:
                    timelines.append(f"<h3>{html.escape(c['lib'])} · {html.escape(c['scenario'])} · "
                                     f"{html.escape(','.join(c['mitigations']) or 'none')}: {o['verdict']}</h3>"
                                     f"<p><code>{html.escape(o['run_dir'])}</code></p><img src='data:image/png;base64,{png}'>")
    imgs = "".join(f"<img src='data:image/png;base64,{p}'>" for p in plots.values())
    trend = _trend(d.parent / "history.sqlite", state)
    if trend:
        imgs += (f"<h2>Trend (run history)</h2><p>failure rate per day of these libraries and "
                 f"scenarios in <code>{html.escape(str(d.parent / 'history.sqlite'))}</code></p>"
                 f"<img src='data:image/png;base64,{trend}'>")
    from harness.analysis import history, safety
    safe = safety.for_report(history.db_path(d.parent), state.get("libs", []))
    if safe:
        imgs += f"<h2>Safety table (run history)</h2>{safe[1]}"
        md += ["", "## Safety table (run history)", "", safe[0].rstrip()]
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>tlsharness comparison</title>"
            f"<style>{CSS}</style></head><body><h1>tlsharness comparison</h1>"
            f"<p>{html.escape(state.get('created', ''))} · {state['repeat']} runs per cell · "
            f"{html.escape(', '.join(f'{k} {v}' for k, v in state.get('machine', {}).items()))}<br><code>{html.escape(state.get('command', ''))}</code></p>"
            f"<table><tr>{''.join(f'<th>{h}</th>' for h in head)}</tr>{''.join(rows)}</table>"
            f"<h2>Plots</h2>{imgs}<h2>Run timelines</h2>{''.join(timelines)}"
            f"<p>Source of truth: <code>compare.json</code>; regenerate with <code>tlsharness report {html.escape(str(d))}</code>.</p>"
            f"</body></html>")
    (d / "report.html").write_text(page)
    (d / "report.md").write_text("# tlsharness comparison\n\n" + "\n".join(md) + "\n")
    return d / "report.html", d / "report.md"


def _trend(db: Path, state: dict) -> str | None:
    """The history's failure rate per day for this comparison's libraries and
    scenarios (base64 PNG), when a history is there."""
    if not db.exists():
        return None
    import tempfile
    from harness.analysis import history
    try:
        con = history.connect(db)
        series = {k: v for k, v in history.trend(con, ("lib", "scenario")).items()
                  if k.split(" | ")[0] in state.get("libs", [])
                  and k.split(" | ")[1] in state.get("scenarios", [])}
        con.close()
    except (history.HistoryError, OSError):
        return None
    if not series:
        return None
    with tempfile.NamedTemporaryFile(suffix=".png") as f:
        history.trend_png(series, f.name)
        return base64.b64encode(Path(f.name).read_bytes()).decode()


def run_report(d: Path) -> tuple[Path, Path]:
    if (d / "outcome.json").exists():
        out = read_json(d / "outcome.json")
        if out is None:
            raise ReportError(f"{d / 'outcome.json'}: damaged (truncated, not UTF-8 or not JSON)")
    else:                                   # the controller was killed: what there is
        man = read_json(d / "manifest.json") or {}
        samples, _ = read_samples(d / "samples.jsonl")
        out = {"verdict": "did not finish", "reason": "no outcome.json: the run was killed "
               f"before it ended; {len(samples)} samples kept",
               "command": man.get("command"), "lib": (man.get("config") or {}).get("lib")}
    png = timeline(d) if (d / "samples.jsonl").exists() else None
    keys = ["verdict", "reason", "lib", "lib_version", "memory", "time_to_failure_ms", "replies",
            "replies_per_s", "bad", "timed_out", "cross_handoffs", "families", "command"]
    rows = "".join(f"<tr><th>{k}</th><td>{html.escape(str(out.get(k, '')))}</td></tr>" for k in keys)
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>tlsharness run</title>"
            f"<style>{CSS}</style></head><body><h1>tlsharness run: {html.escape(str(out.get('verdict')))}</h1>"
            f"<table>{rows}</table>" + (f"<img src='data:image/png;base64,{png}'>" if png else "")
            + "</body></html>")
    (d / "report.html").write_text(page)
    (d / "report.md").write_text("# tlsharness run\n\n" + "\n".join(f"- **{k}**: {out.get(k, '')}" for k in keys) + "\n")
    return d / "report.html", d / "report.md"


def read_json(path: Path) -> dict | None:
    """A JSON object from a results folder, or None when it is missing or damaged
    (truncated, not JSON, not UTF-8, not an object)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def index(root: Path) -> Path:
    """results/index.html; a damaged entry is listed as damaged, never fatal."""
    items = []
    for d in sorted(root.iterdir(), reverse=True) if root.exists() else []:
        if not d.is_dir():
            continue
        if (d / "compare.json").exists():
            st = read_json(d / "compare.json")
            if st is None or not isinstance(st.get("libs"), list) or not isinstance(st.get("scenarios"), list):
                items.append(f"<li>{html.escape(d.name)} comparison: damaged compare.json</li>")
                continue
            items.append(f"<li><a href='{d.name}/report.html'>{d.name}</a> comparison: "
                         f"{html.escape(', '.join(map(str, st['libs'])))} × "
                         f"{html.escape(', '.join(map(str, st['scenarios'])))}</li>")
        elif (d / "outcome.json").exists():
            o = read_json(d / "outcome.json")
            if o is None:
                items.append(f"<li>{html.escape(d.name)} run: damaged outcome.json</li>")
                continue
            link = f"{d.name}/report.html" if (d / "report.html").exists() else f"{d.name}/outcome.json"
            items.append(f"<li><a href='{link}'>{d.name}</a> run: {html.escape(str(o.get('lib', '')))} "
                         f"{html.escape(str(o.get('verdict', '?')))}</li>")
        elif (d / "manifest.json").exists():
            items.append(f"<li>{html.escape(d.name)} run: did not finish (no outcome.json)</li>")
    p = root / "index.html"
    root.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(".html.tmp")
    tmp.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>tlsharness results</title>"
                   f"<style>{CSS}</style></head><body><h1>tlsharness results</h1><ul>{''.join(items)}</ul></body></html>")
    tmp.replace(p)
    return p
