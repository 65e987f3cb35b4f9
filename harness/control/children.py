"""Child processes of the controller: spawned fresh (never forked from the
controller), each in its own process group, output to a log in the run
folder, stopped politely then killed by group.  Children set
PR_SET_PDEATHSIG themselves, so a SIGKILL of the controller kills them too.
(A server tlsharness did not build runs under a keeper instead: kept.py.)"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from harness.analysis import results
from harness.segments import LoadgenView


class Children:
    def __init__(self, run_dir: Path):
        self.dir = run_dir
        self.procs: list[subprocess.Popen] = []
        self.logs: list = []

    def spawn(self, module_args: list[str], fds: list[int], log: str,
              env: dict | None = None) -> subprocess.Popen:
        """python -m MODULE ARGS..."""
        return self.spawn_cmd([sys.executable, "-m", *module_args], fds, log, env)

    def spawn_cmd(self, argv: list[str], fds: list[int], log: str,
                  extra_env: dict | None = None) -> subprocess.Popen:
        f = open(self.dir / log, "w")
        self.logs.append(f)
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", **(extra_env or {}))
        p = subprocess.Popen(argv, pass_fds=fds,
                             stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                             start_new_session=True, env=env, cwd=str(results.ROOT))
        self.procs.append(p)
        return p

    def stop_all(self, grace: float) -> None:
        for p in self.procs:                  # SIGTERM first: the stand stops its workers
            if p.poll() is None:
                signal_pid(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for p in self.procs:
            try:
                p.wait(max(0.05, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for p in self.procs:                  # then each whole group, whatever is left
            signal_group(p.pid, signal.SIGKILL)
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass
        for p in self.procs:                  # members other than the leader exit asynchronously
            wait_group_gone(p.pid, 5.0)
        for f in self.logs:
            f.close()
        self.logs = []


def start_loadgens(children: Children, port: int, conns: int, clients: int,
                   fields: dict, ext: str = "_tlsh_loadgen") -> tuple[LoadgenView, list]:
    """K load generator processes sharing `conns` connections to 127.0.0.1:port;
    `fields` fill each one's struct tlsh_lg_config (harness.spec.params.c_fields),
    `ext` is the client build (harness.builds.native.client_extension).  With
    the fields of `transport="tcp"` the load is plain SIP over TCP: `port` is
    then the server's plain TCP port, not its TLS port."""
    view = LoadgenView(clients)
    procs, base = [], 0
    for i in range(clients):
        n = conns // clients + (1 if i < conns % clients else 0)
        lc = {"ext": ext, "c": {**fields, "host": "127.0.0.1", "port": port, "nconns": n,
                                "conn_base": base, "client_index": i}}
        base += n
        path = children.dir / f"loadgen-{i}.json"
        path.write_text(json.dumps(lc))
        procs.append(children.spawn(["harness.loadgen", str(path), str(view.fd), str(i),
                                     str(os.getpid())], [view.fd], f"loadgen-{i}.log"))
    return view, procs


def group_members(pgid: int) -> list[int]:
    """The live (not zombie) members of a process group (psutil has no pgid:
    os.getpgid of each process)."""
    out = []
    for p in psutil.process_iter(["status"]):
        try:
            if p.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(p.pid) == pgid:
                out.append(p.pid)
        except (OSError, psutil.Error):
            pass
    return out


def wait_group_gone(pgid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while group_members(pgid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def signal_pid(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
