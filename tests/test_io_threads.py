"""--io-model threads: one I/O process does every TLS accept, handshake, read
and write in a pool of threads (native_shim/src/io_threads.c); SIP workers
are processes that only answer the decrypted requests."""
import json
from pathlib import Path

import pytest

from harness.spec import io_model
from harness.spec.config import RunConfig
from harness.spec.params import ConfigError
from support import run, tlsharness

THREADS = ("--io-model", "threads", "--memory", "private")


def test_slot_layout():
    assert io_model.nslots(4) == 5
    assert io_model.nslots(4, "processes", 3) == 5
    assert io_model.nslots(4, "threads", 3) == 8
    assert io_model.nslots_of({"workers": 2, "io_model": "threads", "io_threads": 2}) == 5


@pytest.mark.parametrize("args, words", [
    (("--io-model", "threads"), "use --memory private"),
    (("--io-model", "threads", "--memory", "interpose"), "use --memory private"),
    (("--session-sharing", "concurrent"), "only with --io-model threads"),
    (THREADS + ("--session-sharing", "concurrent", "--io-threads", "1"), "--io-threads 2"),
    (THREADS + ("--mitigate", "single-process"), "acts on the process model"),
    (THREADS + ("--conn-locks", "split"), "not supported in the threaded model"),
    (THREADS + ("--shutdown", "exit"), "not supported in the threaded model"),
    (THREADS + ("--fault", "die:1"), "--fault takes"),
    (THREADS + ("--fault", "block:3", "--io-threads", "2"), "I/O thread N: 1..2"),
])
def test_refused_in_one_line(tmp_path, args, words):
    r = tlsharness("run", "--out", str(tmp_path), "--duration", "1", *args, timeout=30)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tlsharness: error:"), r.stderr
    assert words in lines[0]
    assert not any(tmp_path.iterdir()), "a refused run left a folder"


def test_config_accepts_what_processes_refuse():
    """--reply-by other needs the arena in the process model, not with threads."""
    with pytest.raises(ConfigError):
        RunConfig(memory="private", reply_by="other").validate()
    RunConfig(io_model="threads", memory="private", reply_by="other").validate()


def _slots(out):
    roles = [w["role"] for w in out["workers"]]
    return roles, {w["slot"]: w for w in out["workers"]}


@pytest.mark.stress
def test_healthy_threaded_run(tmp_path):
    out = run(tmp_path, *THREADS, "--workers", "2", "--io-threads", "2", "--conns", "8",
              "--duration", "1.5")
    assert out["verdict"] == "pass", out["reason"]
    assert out["replies"] > 0 and out["bad"] == 0 and out["timed_out"] == 0
    roles, by_slot = _slots(out)
    # slot 0 the I/O process, 1..2 the SIP workers, 3..4 its TLS threads (tids)
    assert roles == ["listener", "sip-worker", "sip-worker", "worker", "worker"]
    io_pid = by_slot[0]["pid"]
    tids = [by_slot[s]["pid"] for s in (3, 4)]
    assert len({io_pid, *tids}) == 3 and all(t > 0 for t in tids)
    assert sum(by_slot[s]["handshakes"] for s in (3, 4)) == 8
    assert all(by_slot[s]["requests"] > 0 for s in (1, 2)), "a SIP worker answered nothing"
    assert by_slot[1]["handshakes"] == 0, "a SIP worker made a TLS handshake"
    stand = json.loads((Path(out["run_dir"]) / "stand.json").read_text())
    assert stand["c"]["io_model"] == 1 and stand["c"]["io_threads"] == 2


@pytest.mark.stress
def test_stuck_io_thread_is_judged_by_its_slot(tmp_path):
    """A blocked I/O thread (its tid in its slot) is seen stuck while the
    other thread serves: degraded, the stuck slot being that thread's."""
    out = run(tmp_path, *THREADS, "--workers", "2", "--io-threads", "2", "--conns", "8",
              "--duration", "3", "--fault", "block:1:300")
    assert out["verdict"] == "degraded", out["reason"]
    _, by_slot = _slots(out)
    stuck = {s["slot"]: s for s in out["stuck"]}
    assert list(stuck) == [3]
    assert stuck[3]["pid"] == by_slot[3]["pid"] != by_slot[0]["pid"]
    assert stuck[3]["activity"] == "fault"
    assert "injected fault" in out["families"]
