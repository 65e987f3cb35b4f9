"""Comparisons: resumable, statistics, a self-contained report that opens in
headless Chromium."""
import json
import shutil
import signal
import subprocess
import sys
import time

import pytest

from support import ROOT, tlsharness
from harness.analysis.stats import cell_stats, wilson


def test_wilson_interval():
    lo, hi = wilson(10, 10)
    assert round(lo, 3) == 0.722 and hi == 1.0
    lo, hi = wilson(0, 10)
    assert lo == 0.0 and round(hi, 3) == 0.278


def test_cell_stats():
    runs = [{"verdict": "degraded", "time_to_failure_ms": 100.0},
            {"verdict": "pass", "replies_per_s": 1000.0, "handshakes_client": 50, "load_seconds": 10,
             "latency_ms": {"p50": 1.0, "p99": 5.0}, "arena_bytes_per_conn": 40000,
             "arena": {"peak": 9}, "stand_cpu_s": 2.0, "replies": 10000},
            {"verdict": "crash", "time_to_failure_ms": 300.0}]
    s = cell_stats(runs)
    assert s["failures"] == 2 and s["judged"] == 3 and s["ttf_ms_median"] == 200.0
    assert s["replies_per_s"] == 1000.0 and s["cpu_s_per_1k_replies"] == 0.2
    assert s["arena_bytes_per_conn"] == 40000


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    out = tmp_path_factory.mktemp("cmp")
    r = tlsharness("compare", "--libs", "openssl,wolfssl",
                   "--scenarios", "handoff-per-message,handshake-churn",
                   "--repeat", "1", "--duration", "4", "--out", str(out), "-q", timeout=300)
    assert r.returncode == 0, r.stderr
    d = next(out.iterdir())
    return d if d.is_dir() else next(p for p in out.iterdir() if p.is_dir())


@pytest.mark.stress
def test_report_shows_openssl_failure_beside_wolfssl_pass(comparison):
    state = json.loads((comparison / "compare.json").read_text())
    by = {(c["lib"], c["scenario"]): c["runs"][0]["verdict"] for c in state["cells"]}
    # OpenSSL in the arena under handshake churn fails 10 of 10 runs here
    assert by["openssl", "handshake-churn"] in {"degraded", "deadlock", "mixed", "livelock",
                                                 "crash", "corruption"}
    assert by["wolfssl", "handoff-per-message"] == "pass"
    page = (comparison / "report.html").read_text()
    assert "<tr class='fail'><td>openssl" in page and "<tr class='pass'><td>wolfssl" in page
    assert "data:image/png;base64," in page and "http://" not in page and "https://" not in page


@pytest.mark.stress
def test_report_opens_in_headless_chromium(comparison, tmp_path):
    exe = shutil.which("chromium")
    if not exe:
        pytest.skip("chromium not installed (make setup installs it)")
    shot = tmp_path / "report.png"
    r = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                        "--no-first-run", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync",
                        f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,1600",
                        f"--screenshot={shot}", f"file://{comparison / 'report.html'}"],
                       capture_output=True, text=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 20000, r.stderr[-500:]
    # the page really rendered: text and plots, not one blank colour
    import matplotlib.image as mpimg
    px = mpimg.imread(str(shot))
    rgb = (px[..., :3] * 255).astype("uint8").reshape(-1, 3)
    colours = {tuple(c) for c in rgb[:: max(1, len(rgb) // 20000)]}
    dark = (rgb.sum(axis=1) < 200).mean()                  # text and lines are dark
    assert len(colours) > 50 and 0.001 < dark < 0.5, (len(colours), dark)
    (comparison / "report-screenshot.png").write_bytes(shot.read_bytes())


@pytest.mark.stress
def test_report_regenerates_from_json(comparison):
    (comparison / "report.html").unlink()
    r = tlsharness("report", str(comparison), timeout=120)
    assert r.returncode == 0 and (comparison / "report.html").exists()
    assert comparison.name in (comparison.parent / "index.html").read_text()


@pytest.mark.stress
def test_interrupted_compare_resumes_without_rerunning(tmp_path):
    p = subprocess.Popen([sys.executable, "-m", "harness", "compare", "--libs", "openssl",
                          "--scenarios", "baseline-private", "--repeat", "3", "--duration", "2",
                          "--out", str(tmp_path), "-q"], cwd=str(ROOT),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        state_file = None
        while time.monotonic() < deadline:
            files = list(tmp_path.glob("*/compare.json"))
            if files and json.loads(files[0].read_text())["cells"][0]["runs"]:
                state_file = files[0]
                break
            time.sleep(0.2)
        assert state_file, "no run finished"
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=30)
        assert p.returncode == 130 and "compare --resume" in err
    finally:
        if p.poll() is None:
            p.kill()
    before = json.loads(state_file.read_text())["cells"][0]["runs"]
    assert 1 <= len(before) < 3
    r = tlsharness("compare", "--resume", str(state_file.parent), "-q", timeout=120)
    assert r.returncode == 0, r.stderr
    after = json.loads(state_file.read_text())["cells"][0]["runs"]
    assert len(after) == 3
    assert [o["run_dir"] for o in after[:len(before)]] == [o["run_dir"] for o in before]
    finished = [f for f in (state_file.parent / "runs").glob("*/*/outcome.json")
                if json.loads(f.read_text())["verdict"] != "interrupted"]
    assert len(finished) == 3                      # nothing rerun (the interrupted one says so)
