"""The run history: every run of `run`, `repro`, `compare`, `mitigations`,
`target` and `watch` recorded in `<results>/history.sqlite` (SQLite,
embedded, no server), so that "did this failure rate change since the last
release?" has an answer.

Schema (version 1, in table `meta` as schema_version; `migrate` brings an
older file up to date, step by step):

    runs(id, run_id UNIQUE, recorded_at, kind, command, lib, lib_version,
         scenario, params, mitigations, verdict, families, time_to_failure_ms,
         replies_per_s, tool_version, git_commit, campaign, run_dir)

params, mitigations and families are JSON text.  Recording never fails a
run: a history that cannot be written is one warning line.
"""
from __future__ import annotations

import json
import os
import sqlite3
import sys
import time
from pathlib import Path

from harness.verdicts import FAILURES, NOT_HANGS, NOT_JUDGED
from harness.verdicts import V

SCHEMA_VERSION = 1
FAILED = tuple(sorted(FAILURES))
UNJUDGED = tuple(sorted(NOT_JUDGED | NOT_HANGS))       # kept, not counted in the rates

MIGRATIONS = {
    1: """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    run_id TEXT UNIQUE,
    recorded_at TEXT NOT NULL,
    kind TEXT NOT NULL,
    command TEXT,
    lib TEXT,
    lib_version TEXT,
    scenario TEXT,
    params TEXT,
    mitigations TEXT,
    verdict TEXT NOT NULL,
    families TEXT,
    time_to_failure_ms REAL,
    replies_per_s REAL,
    tool_version TEXT,
    git_commit TEXT,
    campaign TEXT,
    run_dir TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_lib ON runs (lib, lib_version, scenario, recorded_at);
""",
}


class HistoryError(RuntimeError):
    pass


def db_path(results_root) -> Path:
    """<results>/history.sqlite, or $TLSH_HISTORY_DB: one history for runs
    made into many results folders (a CI suite's temporary ones, say)."""
    env = os.environ.get("TLSH_HISTORY_DB")
    return Path(env) if env else Path(results_root) / "history.sqlite"


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating it if needed) and migrate to SCHEMA_VERSION."""
    try:
        con = sqlite3.connect(str(path), timeout=10)
        migrate(con)
        return con
    except sqlite3.DatabaseError as e:
        raise HistoryError(f"{path}: not a usable history database ({e})") from None


def version(con: sqlite3.Connection) -> int:
    con.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
    row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else 0


def migrate(con: sqlite3.Connection) -> int:
    v = version(con)
    if v > SCHEMA_VERSION:
        raise HistoryError(f"history schema {v} is newer than this tlsharness ({SCHEMA_VERSION})")
    for step in range(v + 1, SCHEMA_VERSION + 1):
        with con:
            con.executescript(MIGRATIONS[step])
            con.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(step),))
    return SCHEMA_VERSION


def _row(out: dict, kind: str, scenario: str | None, params: dict | None, campaign: str | None):
    from harness import __version__
    from harness.analysis import results
    run_dir = out.get("run_dir") or ""
    return {
        "run_id": Path(run_dir).name if run_dir else None,
        "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "kind": kind,
        "command": out.get("command") if isinstance(out.get("command"), str) else
        " ".join(map(str, out.get("command") or [])) or None,
        "lib": out.get("lib") or (out.get("target") and f"target:{out['target']}"),
        "lib_version": out.get("lib_version"), "scenario": scenario,
        "params": json.dumps(params or {}, sort_keys=True, default=str),
        "mitigations": json.dumps(out.get("mitigations") or []),
        "verdict": out.get("verdict", V.ERROR), "families": json.dumps(out.get("families") or []),
        "time_to_failure_ms": out.get("time_to_failure_ms"),
        "replies_per_s": out.get("replies_per_s"), "tool_version": __version__,
        "git_commit": results.git_revision(), "campaign": campaign, "run_dir": run_dir,
    }


def record(results_root, out: dict, kind: str = "run", scenario: str | None = None,
           params: dict | None = None, campaign: str | None = None) -> bool:
    """Add one run; False (with one warning line) when the history cannot be written."""
    path = db_path(results_root)
    if os.environ.get("TLSH_HISTORY") == "off":      # a campaign's child run: the campaign records
        return False
    try:
        con = connect(path)
        row = _row(out, kind, scenario, params, campaign)
        with con:
            con.execute(f"INSERT OR REPLACE INTO runs ({', '.join(row)}) VALUES "
                        f"({', '.join('?' for _ in row)})", list(row.values()))
        con.close()
        return True
    except (HistoryError, sqlite3.Error, OSError) as e:
        print(f"tlsharness: warning: run not recorded in {path}: {e}", file=sys.stderr)
        return False


def _where(where: dict | None, since: str | None) -> tuple[str, list]:
    """The WHERE clause of the judged runs matching `where` (column = value) and `since`."""
    cond = [f"verdict NOT IN ({', '.join('?' for _ in UNJUDGED)})"]
    args: list = list(UNJUDGED)
    for k, v in (where or {}).items():
        if v:
            cond.append(f"{k} = ?")
            args.append(v)
    if since:
        cond.append("recorded_at >= ?")
        args.append(since)
    return " AND ".join(cond), args


def rates(con: sqlite3.Connection, by=("lib", "lib_version", "scenario"), where: dict | None = None,
          since: str | None = None) -> list[dict]:
    """Failure rate per group: runs, failures, rate, first and last run, families."""
    cols = ", ".join(by)
    cond, args = _where(where, since)
    sql = (f"SELECT {cols}, COUNT(*), SUM(verdict IN ({', '.join('?' for _ in FAILED)})), "
           f"MIN(recorded_at), MAX(recorded_at), GROUP_CONCAT(families, '|') FROM runs "
           f"WHERE {cond} GROUP BY {cols} ORDER BY {cols}")
    out = []
    for r in con.execute(sql, list(FAILED) + args):
        n, k = r[len(by)], r[len(by) + 1] or 0
        fams: dict[str, int] = {}
        for chunk in (r[len(by) + 4] or "").split("|"):
            for f in json.loads(chunk) if chunk else []:
                fams[f] = fams.get(f, 0) + 1
        from harness.analysis.stats import wilson
        lo, hi = wilson(k, n)
        out.append(dict(zip(by, r[:len(by)])) | {"runs": n, "failures": k, "rate": k / n if n else None,
                                                 "ci95": [round(lo, 3), round(hi, 3)],
                                                 "first": r[len(by) + 2], "last": r[len(by) + 3],
                                                 "families": fams})
    return out


def trend(con: sqlite3.Connection, by=("lib", "scenario"), where: dict | None = None) -> dict:
    """Per group, per day: (day, runs, failures) — the failure rate over time."""
    cols = ", ".join(by)
    cond, args = _where(where, None)
    sql = (f"SELECT {cols}, substr(recorded_at, 1, 10), COUNT(*), "
           f"SUM(verdict IN ({', '.join('?' for _ in FAILED)})) FROM runs "
           f"WHERE {cond} GROUP BY {cols}, substr(recorded_at, 1, 10) ORDER BY 1")
    out: dict[str, list] = {}
    for r in con.execute(sql, list(FAILED) + args):
        key = " | ".join(str(x or "-") for x in r[:len(by)])
        out.setdefault(key, []).append((r[len(by)], r[len(by) + 1], r[len(by) + 2] or 0))
    return out


def trend_png(series: dict, path) -> None:
    """The failure rate per day of each group, one line each, with its 95% interval."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from datetime import date
    from harness.analysis.stats import wilson
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for key, pts in sorted(series.items())[:12]:
        days = [date.fromisoformat(d) for d, _, _ in pts]
        rate = [k / n for _, n, k in pts]
        ci = [wilson(k, n) for _, n, k in pts]
        ax.plot(days, rate, marker="o", label=key)
        ax.fill_between(days, [c[0] for c in ci], [c[1] for c in ci], alpha=0.15)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("failure rate")
    ax.set_title("failure rate per day (95% intervals)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.autofmt_xdate()
    fig.savefig(str(path), dpi=90, bbox_inches="tight")
    plt.close(fig)


def recent(con: sqlite3.Connection, limit: int = 20) -> list[dict]:
    cur = con.execute("SELECT recorded_at, kind, lib, lib_version, scenario, verdict, families, "
                      "time_to_failure_ms, replies_per_s, run_dir FROM runs ORDER BY id DESC LIMIT ?",
                      (limit,))
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur]
