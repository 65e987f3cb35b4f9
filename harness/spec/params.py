"""Every parameter of a run, declared once.

One `Param` says a parameter's name, default, help, range or choices, how its
command-line text is read, and which C struct field it fills in which child
process.  From this table come: the `RunConfig` dataclass, the flags of
`tlsharness run` (and of repro, demo, compare and scenario files), the range
and choice checks, and the typed values handed to the stand and the load
generators, which copy them into `struct tlsh_stand_cfg` / `struct
tlsh_lg_config` field by field without knowing the parameters.

Adding a switch that reaches the C worker: one `Param` here with
`c=(CField("stand", "my_field"),)`, the field in `struct tlsh_stand_cfg`
(native_shim/include/tlsh_stand.h), and the C code that acts on it.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Callable

from harness.vocab import M


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class CField:
    """A C struct field filled from a parameter: in `proc` ("stand" or
    "loadgen"), field `name`, value `value(cfg)` (default: the parameter's
    value; a bool as 0/1; a choice as its index in `choices`)."""
    proc: str
    name: str
    value: Callable[[Any], Any] | None = None


@dataclass(frozen=True)
class Param:
    name: str
    default: Any                       # as typed on the command line when `parse` is set
    help: str
    kind: type | None = None           # int, float, str, bool; None: the default's type
    choices: tuple = ()
    range: tuple | None = None         # (lo, hi), inclusive
    parse: Callable[[str], Any] | None = None   # command-line text -> value
    c: tuple = ()                      # CFields this parameter fills
    flag: str | None = ""              # "" = --name-with-dashes; None = not on the command line
    negate: str = ""                   # a bool that defaults True: this flag turns it off
    metavar: str | None = None

    @property
    def type(self) -> type:
        return self.kind or type(self.default)

    @property
    def option(self) -> str:
        return self.negate or self.flag or "--" + self.name.replace("_", "-")

    @property
    def dest(self) -> str:
        """The attribute argparse gives it (and its key in scenario files)."""
        return self.option.lstrip("-").replace("-", "_")

    def initial(self) -> Any:
        """The value a RunConfig starts with."""
        return self.parse(self.default) if self.parse else self.default

    def check(self, v: Any) -> None:
        if self.choices and v not in self.choices:
            raise ConfigError(f"{self.option} must be one of {', '.join(self.choices)} (got {v!r})")
        if self.range and not self.range[0] <= v <= self.range[1]:
            raise ConfigError(f"{self.option} must be between {self.range[0]} and {self.range[1]} "
                              f"(got {v})")

    def c_value(self, f: CField, cfg) -> Any:
        if f.value:
            return f.value(cfg)
        v = getattr(cfg, self.name)
        if self.choices:
            self.check(v)                  # one line (ConfigError), not a ValueError
            return self.choices.index(v)
        return int(v) if isinstance(v, bool) else v


def parse_tls(text: str) -> int:
    v = {"1.2": 12, "12": 12, "1.3": 13, "13": 13}.get(str(text))
    if v is None:
        raise ConfigError(f"--tls must be 1.2 or 1.3 (got {text!r})")
    return v


def parse_fault(text: str) -> dict:
    """KIND[:WORKER[:AFTER_MS]], e.g. block:2:300."""
    parts = text.split(":")
    try:
        d = {"kind": parts[0]}
        if len(parts) > 1:
            d["slot"] = int(parts[1])
        if len(parts) > 2:
            d["after_ms"] = int(parts[2])
        if len(parts) > 3:
            raise ValueError
    except ValueError:
        raise ConfigError(f"--fault takes KIND[:WORKER[:AFTER_MS]] (got {text!r})") from None
    if not 0 <= d.get("after_ms", 0) <= 86_400_000:
        raise ConfigError(f"--fault AFTER_MS must be 0..86400000 (got {d['after_ms']})")
    return d


def parse_list(text: str) -> list:
    return [m for m in str(text).split(",") if m]


# the stand's fault kinds, numbered as enum tlsh_fault_kind; hog is the controller's own
FAULTS = ("none", "block", "spin", "die", "stop", "crash", "leak", "hog")

# mitigations the servers shipped, combinable (docs/scenarios.md)
MITIGATIONS = {
    M.PSHARED: "locks the library creates forced PTHREAD_PROCESS_SHARED (LD_PRELOAD; "
               "OpenSIPS ssl_tweaks.h, Kamailio TLS_PTHREAD_MUTEX_SHARED)",
    M.PREFORK_THREAD: "library init and contexts in a throwaway thread before fork "
                      "(Kamailio tls_threads_mode=1)",
    M.GLOBAL_LOCK: "one lock around all TLS work of a connection (OpenSIPS 3.2 tls_global_lock)",
    M.PER_WORKER_CTX: "one SSL_CTX per worker, created before fork (OpenSIPS #1799)",
    M.ATFORK_STOP: "pthread_atfork(prepare = OPENSSL_thread_stop): the parent's per-thread state "
                   "released before every fork (OpenSIPS PR #3841, Kamailio tls_threads_mode=2)",
    M.NO_ATEXIT: "no library cleanup at exit (OPENSSL_INIT_NO_ATEXIT; OpenSIPS #1121, #1304)",
    M.LOCKED_RAND: "the RAND method under a shared lock, re-entrant per process (OpenSIPS "
                   "#1799/#1953, Kamailio rand_engine)",
    M.SINGLE_PROCESS: "all TLS I/O in one process (OpenSIPS 4.0, Kamailio tcp_main_threads): one "
                      "worker serves every connection",
    M.WRITE_DUP: "wolfSSL_write_dup after the handshake (OpenSIPS tls_wolfssl); needs a wolfSSL "
                 "built with HAVE_WRITE_DUP",
    M.WARM_METHODS: "every digest and cipher method used once in the parent before fork, so "
                    "that tables a library fills on first use (BoringSSL's EVP_sha1() and "
                    "friends) are filled in every worker's memory",
}


def max_conns(conns: int) -> int:
    """Connection slots in the stand: room for every client connection twice
    over (churn closes and reopens), and at least 64."""
    return max(64, conns * 2 + 16)


def _fault_kind(cfg) -> int:
    k = cfg.fault.get("kind", "none")
    return 0 if k == "hog" else FAULTS.index(k)


S, L = "stand", "loadgen"

PARAMS: tuple[Param, ...] = (
    Param("lib", "openssl", "TLS library of the stand: see 'tlsharness libs' (default %(default)s)"),
    Param("workers", 4, "worker processes (default %(default)s)", range=(1, 254),
          c=(CField(S, "nworkers"),)),
    Param("conns", 50, "client connections (default %(default)s)", range=(1, 20000),
          c=(CField(S, "max_conns", lambda cfg: max_conns(cfg.conns)),
             CField(L, "total_conns"))),
    Param("duration", 10.0, "seconds of load (default %(default)s)", range=(0.5, 3600),
          c=(CField(L, "duration_s"),)),
    Param("memory", "shared", "shared (TLS objects in the arena) | private | interpose (forced: "
          "the whole stand's malloc in the arena, for libraries without a hook)",
          choices=("shared", "private", "interpose"),
          c=(CField(S, "memory", lambda cfg: int(cfg.memory == "private")),)),
    Param("handoff", "per-message", "pinned | per-connection | per-message",
          choices=("pinned", "per-connection", "per-message"), c=(CField(S, "handoff"),)),
    Param("lock", "spin", "connection lock: spin | futex | robust",
          choices=("spin", "futex", "robust"), c=(CField(S, "lock_flavor"),)),
    Param("tls", "1.3", "1.2 | 1.3", kind=int, parse=parse_tls, c=(CField(L, "tls_version"),)),
    # not a flag of `tlsharness run`: the stand speaks TLS only; `target` sets it for a server
    # that also listens on plain TCP (the index is TLSH_LG_TLS / TLSH_LG_TCP)
    Param("transport", "tls", "the load generators' transport: tls | tcp (plain SIP over TCP: no "
          "TLS client, the same requests, window, churn and reply checks)",
          choices=("tls", "tcp"), c=(CField(L, "transport"),), flag=None),
    Param("load", "persistent", "persistent | churn", choices=("persistent", "churn")),
    Param("churn_every", 100, "requests per connection (churn)", range=(1, 10**9),
          c=(CField(L, "churn", lambda cfg: cfg.churn_every if cfg.load == "churn" else 0),)),
    Param("resume", False, "churn: resume the previous TLS session", c=(CField(L, "resume"),)),
    Param("rate", 0.0, "requests/s in all, 0 = closed loop", range=(0, 10**7),
          c=(CField(L, "rate", lambda cfg: cfg.rate / cfg.clients),)),
    Param("window", 4, "outstanding requests per connection", range=(1, 64),
          c=(CField(L, "window"),)),
    Param("clients", 1, "load generator processes", range=(1, 16), c=(CField(L, "nclients"),)),
    Param("timeout", 2.0, "seconds before a request times out", range=(0.05, 60),
          c=(CField(L, "timeout_s"),)),
    Param("ctx", "shared", "SSL_CTX: shared | per-worker", choices=("shared", "per-worker")),
    Param("cert", "ec", "ec | rsa", choices=("ec", "rsa")),
    Param("ciphers", "", "TLS 1.2 cipher list", c=(CField(L, "ciphers"),)),
    Param("tickets", True, "disable session tickets", negate="--no-tickets"),
    Param("arena_mb", 256, "shared arena size (default %(default)s)", range=(8, 16384)),
    Param("arena_align", "16", "alignment of the arena's blocks: 16 (as malloc) | 8 (every block "
          "8 bytes past a 16-byte boundary, as some servers' shared allocators give: OpenSIPS "
          "#3814)", choices=("16", "8")),
    Param("seed", None, "seed (recorded; printed in the re-run command)", kind=int),
    Param("out", "results", "results root (default ./results, or $TLSH_RESULTS)"),
    Param("linger", 1.0, "seconds to keep watching after a failure", range=(0, 60)),
    Param("stop_on_failure", True, "do not stop at the first failure verdict",
          negate="--keep-going"),
    Param("sample_hz", 20.0, "watchdog sampling rate", range=(1, 200)),
    Param("stall_s", 0.4, "busy this long = stuck (default %(default)s)", range=(0.05, 60)),
    Param("fault", "none", "inject KIND[:WORKER[:AFTER_MS]]: block, spin, die, stop, crash (in a "
          "worker, holding its locks), hog (CPU hogs outside the stand, stand at nice 19), leak "
          "(32 KiB of arena per handshake never freed)", kind=dict, parse=parse_fault,
          c=(CField(S, "fault_kind", _fault_kind),
             CField(S, "fault_slot", lambda cfg: cfg.fault.get("slot", 1)),
             CField(S, "fault_after_ms", lambda cfg: cfg.fault.get("after_ms", 500)))),
    Param("global_lock", False, "one lock around all TLS work (OpenSIPS 3.2)",
          c=(CField(S, "global_lock"),)),
    Param("chaos", "", "contention amplifier: after taking a lock that lives in the arena, "
          "sleep DELAY_US with probability P", metavar="P:DELAY_US"),
    Param("check_random", False, "each worker draws random bytes right after fork; identical "
          "blocks in two workers are a corruption verdict", c=(CField(S, "check_random"),)),
    Param("mitigations", "", "comma-separated mitigations: " + ", ".join(MITIGATIONS) +
          " (see docs/scenarios.md)", kind=list, parse=parse_list, flag="--mitigate",
          c=(CField(S, "write_dup", lambda cfg: int(M.WRITE_DUP in cfg.mitigations)),)),
    Param("parent_use", False, "the stand's main thread uses the library before fork, as other "
          "modules of a server do (libcurl, TLS redis)"),
    Param("shutdown", "kill", "end of run: kill (workers SIGKILLed) | exit (workers leave through "
          "exit(), running the library's atexit cleanup; judged too)", choices=("kill", "exit"),
          c=(CField(S, "exit_on_term"),)),
    Param("rand_lock", "none", "none | plain: the RAND method wrapped in a non-recursive shared "
          "lock (OpenSIPS #1953); --mitigate locked-rand makes it re-entrant",
          choices=("none", "plain")),
    Param("reject_every", 0, "every Nth client connection rejects the server certificate (alert "
          "unknown_ca): failing handshakes", range=(0, 10**6), metavar="N",
          c=(CField(L, "reject_every"),)),
    Param("abort_every", 0, "every Nth client connection is reset (RST, no close_notify) once "
          "its requests are written, before their replies are read (0 = never)",
          range=(0, 10**6), metavar="N", c=(CField(L, "abort_every"),)),
    Param("rst_handshake_every", 0, "every Nth TLS handshake the client resets (RST) once the "
          "server has answered its ClientHello, before the handshake completes (0 = never)",
          range=(0, 10**6), metavar="N", c=(CField(L, "rst_handshake_every"),)),
    Param("garbage_hello_every", 0, "every Nth client connection writes random bytes behind a "
          "TLS record header instead of a ClientHello, then closes (0 = never)",
          range=(0, 10**6), metavar="N", c=(CField(L, "garbage_hello_every"),)),
    Param("no_close_notify", False, "churn: close each connection without close_notify (a plain "
          "close of the socket)", c=(CField(L, "no_close_notify"),)),
    Param("ramp", 0.0, "open the connections over S seconds instead of all at once (default "
          "%(default)s)", range=(0, 600), metavar="S", c=(CField(L, "ramp_s"),)),
    Param("reply_by", "self", "self | other: the replies to what one worker read are written by "
          "another worker (its own fd, the connection's lock), as SIP replies and forwarded "
          "requests are in the servers", choices=("self", "other"),
          c=(CField(S, "reply_other"),)),
    Param("conn_locks", "one", "one: one lock per connection around its reads and writes | "
          "split: a read lock and a write lock (OpenSIPS tls_wolfssl), so that a reader and a "
          "writer can be in one session at once", choices=("one", "split"),
          c=(CField(S, "split_locks"),)),
    Param("rekey_every", 0, "every N requests on a connection the client asks for a TLS 1.3 key "
          "update, or renegotiates TLS 1.2 (0 = never)", range=(0, 10**9), metavar="N",
          c=(CField(L, "rekey_every"),)),
    Param("reload_ms", 0.0, "replace the server's SSL_CTX this often under load, as tls.reload "
          "does (0 = never)", range=(0, 600_000), metavar="MS"),
    Param("client", "auto", "TLS library of the load generators' client (private memory; the "
          "server never sees which): auto (the cheapest built: OpenSSL 1.1.1 when make setup "
          "fetched it, else the system's) | system | openssl@1.1.1",
          choices=("auto", "system", "openssl@1.1.1")),
    Param("io_model", "processes", "processes: listener + worker processes, connections handed "
          "between them (the stand above) | threads: one I/O process does every TLS accept, "
          "handshake, read and write in --io-threads threads, SIP workers get the decrypted "
          "requests over a channel (OpenSIPS 4.0 tcp_threads, Kamailio 6.1 tcp_main_threads); "
          "needs --memory private", choices=("processes", "threads"), c=(CField(S, "io_model"),)),
    Param("io_threads", 2, "--io-model threads: TLS I/O threads (default %(default)s)",
          range=(1, 64), metavar="N", c=(CField(S, "io_threads"),)),
    Param("session_sharing", "exclusive", "--io-model threads: exclusive (one thread in a "
          "session at a time) | concurrent (the replies are written by another thread without "
          "the session's lock, while its reader may be inside the library: pjproject #3575)",
          choices=("exclusive", "concurrent"), c=(CField(S, "session_concurrent"),)),
    Param("grace", 3.0, "after the duration: time to stop everything before SIGKILL", flag=None),
)

BY_NAME = {p.name: p for p in PARAMS}


def defaults(**values) -> SimpleNamespace:
    """Every parameter at its default, with `values` instead where given: for
    the commands that start load generators without a RunConfig (target,
    watch, probe)."""
    unknown = set(values) - set(BY_NAME)
    if unknown:
        raise TypeError(f"not run parameters: {', '.join(sorted(unknown))}")
    return SimpleNamespace(**{**{p.name: p.initial() for p in PARAMS}, **values})


def c_fields(cfg, proc: str) -> dict:
    """The C struct fields of `proc` ("stand" or "loadgen") filled from the
    parameters, as JSON-ready values."""
    return {f.name: p.c_value(f, cfg) for p in PARAMS for f in p.c if f.proc == proc}
