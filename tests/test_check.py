"""`tlsharness check`: the static facts of a server build.  Each check is
shown to fail both ways on small ELF files built here with gcc, and read
on Debian's Kamailio 5.6 where it is installed."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from harness.analysis import history, measured_lookup
from harness.builds import elfcheck
from harness.cli import main

KAMAILIO = Path("/usr/sbin/kamailio")
KAMAILIO_TLS = Path("/usr/lib/x86_64-linux-gnu/kamailio/modules/tls.so")
needs_gcc = pytest.mark.skipif(not shutil.which("gcc"), reason="no gcc")

OVERRIDE = """#include <pthread.h>
int pthread_mutex_init(pthread_mutex_t *m, const pthread_mutexattr_t *a) {
    pthread_mutexattr_t x; (void)m; (void)a;
    pthread_mutexattr_init(&x);
    pthread_mutexattr_setpshared(&x, %s);
    return 0;
}
"""
NO_CALL = """#include <pthread.h>
int pthread_mutex_init(pthread_mutex_t *m, const pthread_mutexattr_t *a) {
    (void)m; (void)a; return 0;
}
"""
ATFORK = """#include <pthread.h>
static void h(void) {}
int main(void) { return pthread_atfork(h, h, h); }
"""
PLAIN = "int main(void) { return 0; }\n"
INIT = """int OPENSSL_init_crypto(unsigned long long opts, const void *settings);
int main(void) { return OPENSSL_init_crypto(%s, 0); }
"""


def _build(tmp: Path, name: str, src: str, *flags: str) -> Path:
    c, out = tmp / f"{name}.c", tmp / name
    c.write_text(src)
    r = subprocess.run(["gcc", "-O2", "-o", str(out), str(c), *flags], capture_output=True,
                       text=True, timeout=60)
    if r.returncode:
        pytest.skip(f"gcc could not build {name}: {r.stderr.strip()[:200]}")
    return out


@needs_gcc
@pytest.mark.parametrize("plt", ["-fplt", "-fno-plt"])
def test_override_forcing_pshared_is_told_from_one_that_does_not(tmp_path, plt):
    so = ["-shared", "-fPIC", plt, "-lpthread"]
    shared = elfcheck.facts(_build(tmp_path, "shared.so", OVERRIDE % "PTHREAD_PROCESS_SHARED", *so))
    private = elfcheck.facts(_build(tmp_path, "private.so", OVERRIDE % "PTHREAD_PROCESS_PRIVATE", *so))
    none = elfcheck.facts(_build(tmp_path, "nocall.so", NO_CALL, *so))
    plain = elfcheck.facts(_build(tmp_path, "plain", PLAIN))
    assert shared.pshared == {"pthread_mutex_init": True}
    assert private.pshared == {"pthread_mutex_init": False}
    assert none.pshared == {"pthread_mutex_init": False}
    assert "never calls pthread_mutexattr_setpshared" in none.overrides["pthread_mutex_init"]
    assert plain.overrides == {} and plain.pshared == {}


@needs_gcc
def test_atfork_import_is_seen_and_its_absence_too(tmp_path):
    assert elfcheck.facts(_build(tmp_path, "fork", ATFORK, "-lpthread")).atfork
    assert elfcheck.facts(_build(tmp_path, "plain", PLAIN)).atfork is None


@needs_gcc
def test_no_atexit_flag_read_from_the_init_call(tmp_path):
    yes = elfcheck.facts(_build(tmp_path, "yes", INIT % "0x80002", "-lcrypto"))
    no = elfcheck.facts(_build(tmp_path, "no", INIT % "0x2", "-lcrypto"))
    assert yes.init == no.init == "imports OPENSSL_init_crypto"
    assert (yes.no_atexit, no.no_atexit) == (True, False)
    lib = next(x for x in yes.libs if x.soname.startswith("libcrypto"))
    assert lib.path and lib.version and lib.version.startswith("OpenSSL ")


@pytest.mark.skipif(not (KAMAILIO.exists() and KAMAILIO_TLS.exists()), reason="no Debian Kamailio")
def test_debian_kamailio_5_6():
    core, tls = elfcheck.facts(KAMAILIO), elfcheck.facts(KAMAILIO_TLS)
    assert core.pshared == {"pthread_mutex_init": True, "pthread_rwlock_init": True}
    assert core.flag_string and core.libs == [] and core.server.startswith("kamailio 5.6")
    assert tls.overrides == {} and tls.flag_string
    assert {x.soname for x in tls.libs} == {"libssl.so.3", "libcrypto.so.3"}
    assert all(x.version.startswith("OpenSSL 3.") for x in tls.libs)
    assert tls.allocator == "imports CRYPTO_set_mem_functions"
    assert tls.no_atexit is False and tls.atfork is None


@pytest.mark.skipif(not KAMAILIO_TLS.exists(), reason="no Debian Kamailio")
def test_cli_prints_findings_and_cites_its_sources(capsys):
    assert main(["check", str(KAMAILIO_TLS), "--db", "/nonexistent/h.sqlite"]) == 0
    out = capsys.readouterr().out
    assert "TLS library: OpenSSL 3." in out and "OPENSSL_INIT_NO_ATEXIT: not asked for" in out
    assert "history /nonexistent/h.sqlite: no run history there: not measured here" in out


def test_bad_input_one_line_each_exit_2(tmp_path, capsys):
    (tmp_path / "text").write_text("not elf\n")
    (tmp_path / "empty").mkdir()
    args = [str(tmp_path / "missing"), str(tmp_path / "text"), str(tmp_path / "empty")]
    assert main(["check", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(x.startswith("tlsharness: error: ") for x in err)
    assert "no such file" in err[0] and "not an ELF" in err[1] and "no ELF file" in err[2]
    assert main(["check"]) == 2


def test_measured_lines_come_from_the_history_and_the_doc(tmp_path, monkeypatch):
    monkeypatch.delenv("TLSH_HISTORY_DB", raising=False)
    monkeypatch.delenv("TLSH_HISTORY", raising=False)
    db = history.db_path(tmp_path)
    assert measured_lookup.history_line(db, "OpenSSL", "3.0").endswith("not measured here")
    for i, (fixes, verdict) in enumerate([([], "deadlock"), ([], "pass"), (["pshared"], "pass")]):
        history.record(tmp_path, {"run_dir": str(tmp_path / f"r{i}"), "lib": "openssl",
                                  "lib_version": "OpenSSL 3.0.19 27 Jan 2026",
                                  "mitigations": fixes, "verdict": verdict})
    line = measured_lookup.history_line(db, "OpenSSL", "3.0")
    assert "fixes none: failed 1/2" in line and "fixes pshared: failed 0/1" in line
    assert measured_lookup.history_line(db, "OpenSSL", "1.1").endswith("not measured here")
    md = tmp_path / "measured.md"
    md.write_text("## Fixes\n\n### OpenSSL 9.9\n\n| family | none | pshared |\n|---|---|---|\n"
                  "| lost wake-up | failed 5/5 | failed 0/5 |\n| spin | failed 2/5 | failed 1/5 |\n")
    monkeypatch.setattr(measured_lookup, "MEASURED_MD", md)
    (doc,) = measured_lookup.doc_lines("OpenSSL", "9.9")
    assert "§ 'Fixes / OpenSSL 9.9'" in doc and "unfixed fails in 2" in doc and "pshared 1" in doc
    assert measured_lookup.doc_lines("OpenSSL", "9.8")[0].endswith("not measured here")
