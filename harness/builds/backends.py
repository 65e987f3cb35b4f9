"""TLS library backends: one cffi extension per library, one contract.

Every TLS extension (``harness._native._tlsh_<lib>``) exports the same entry
points (native_shim/include/tlsh_lib.h), so one Backend class serves them
all; what only some libraries can do is in each adapter's optional table,
NULL where the library cannot, which the Backend turns into Unsupported.  A backend is only ever loaded inside a stand or probe process, never
in the controller.  ``tests/test_backend_contract.py`` runs the same cases
against every built backend.
"""
from __future__ import annotations

import os

from harness.builds import native

# name -> extension module (system libraries); variants (other versions,
# user prefixes: "openssl@1.1.1") come from the build report
REGISTRY = {
    "openssl": "_tlsh_openssl",
    "wolfssl": "_tlsh_wolfssl",
    "mbedtls": "_tlsh_mbedtls",
    "gnutls": "_tlsh_gnutls",
}


def registry() -> dict[str, str]:
    reg = dict(REGISTRY)
    for ext, info in native.build_report().items():
        if info.get("lib"):
            reg[info["lib"]] = ext
    return reg


class BackendError(RuntimeError):
    pass


class Unsupported(BackendError):
    """This library (build) cannot do what was asked: a verdict, not a crash."""


class Backend:
    def __init__(self, name: str, ffi, lib):
        self.name, self.ffi, self.lib = name, ffi, lib

    @property
    def kind(self) -> str:
        """openssl, wolfssl, mbedtls or gnutls: the adapter, for variants too."""
        return info(self.name).get("kind") or self.name.split("@")[0]

    # what a missing optional entry means to the user: the same words as a run
    # that asks for it on a library without it
    UNSUPPORTED = {
        "hook": "this build has no allocator hook, so its objects cannot be placed in shared "
                "memory (use --memory private)",
        "parent_use": "--parent-use: the adapter cannot use the library as a parent module would",
        "atfork_stop": "--mitigate atfork-stop: the library keeps no per-thread state that "
                       "OPENSSL_thread_stop could release (OpenSSL only)",
        "rand_wrap": "no replaceable RAND method (OpenSSL's RAND_set_rand_method)",
        "write_dup": "--mitigate write-dup needs wolfSSL_write_dup (a wolfSSL built with "
                     "--enable-writedup: HAVE_WRITE_DUP)",
        "warm_methods": "--mitigate warm-methods: the adapter knows no method tables of this "
                        "library to set up before fork (OpenSSL and its forks only)",
    }
    OPTIONAL = ("hook", "parent_use", "atfork_stop", "rand_wrap", "rand_calls", "rand_reentries",
                "set_lock_counting", "lock_calls", "write_dup", "warm_methods")

    def _optional(self, name: str):
        """The adapter's entry `name` (a cffi function pointer), or None where the
        library has no such feature (NULL in its optional table)."""
        fn = getattr(self.lib.tlsh_lib_optional(), name)
        return None if fn == self.ffi.NULL else fn

    def _required(self, name: str):
        fn = self._optional(name)
        if fn is None:
            raise Unsupported(f"{self.name}: {self.UNSUPPORTED[name]}")
        return fn

    def optional(self) -> dict:
        """Which optional entries this adapter has, and how it counts locks."""
        t = self.lib.tlsh_lib_optional()
        out = {n: getattr(t, n) != self.ffi.NULL for n in self.OPTIONAL}
        out["lock_counting_by"] = {self.lib.TLSH_LOCKS_BY_HOOK: "hook",
                                   self.lib.TLSH_LOCKS_BY_WRAPPING: "wrapped"}.get(t.lock_counting_by)
        return out

    def hook(self, arena) -> bool:
        """Point the library's allocator at the arena.  Must be the first call
        into the library (CRYPTO_set_mem_functions refuses once OpenSSL has
        allocated anything, e.g. when Python's ssl or hashlib came first)."""
        return self._required("hook")(arena) == 0

    def init(self, no_atexit: bool = False) -> None:
        if self.lib.tlsh_lib_init(self.lib.TLSH_INIT_NO_ATEXIT if no_atexit else 0) != 0:
            raise BackendError(f"{self.name}: library initialisation failed")

    def parent_use(self) -> None:
        """Use the library on this thread as a server's other modules do before fork."""
        if self._required("parent_use")() != 0:
            raise BackendError(f"{self.name}: using the library in the parent failed")

    def warm_methods(self) -> None:
        if self._required("warm_methods")() != 0:
            raise BackendError(f"{self.name}: a method table could not be set up")

    def atfork_stop(self) -> None:
        if self._required("atfork_stop")() != 0:
            raise BackendError(f"{self.name}: pthread_atfork failed")

    def rand_wrap(self, reentrant: bool) -> None:
        if self._required("rand_wrap")(2 if reentrant else 1) != 0:
            raise BackendError(f"{self.name}: could not install the RAND method wrapper")

    def rand_calls(self) -> int:
        """Calls into the wrapped RAND method (0 without a wrapper)."""
        fn = self._optional("rand_calls")
        return int(fn()) if fn else 0

    def rand_reentries(self) -> int:
        """Of those, calls made while this process already held the RAND lock."""
        fn = self._optional("rand_reentries")
        return int(fn()) if fn else 0

    def set_lock_counting(self, on: bool = True) -> str | None:
        """Count the library's lock calls (the probe; before init).  Returns how:
        "hook" (its lock hook), "wrapped" (exported lock pointers wrapped), or
        None when neither is possible."""
        fn = self._optional("set_lock_counting")
        if fn is None or fn(int(on)) != 0:
            return None
        return self.optional()["lock_counting_by"]

    def lock_calls(self) -> int:
        fn = self._optional("lock_calls")
        return int(fn()) if fn else 0

    def version(self) -> str:
        return self.ffi.string(self.lib.tlsh_lib_version()).decode()

    def caps(self) -> dict:
        c = self.ffi.new("struct tlsh_lib_caps *")
        self.lib.tlsh_lib_caps(c)
        return {"alloc_hook": bool(c.alloc_hook), "lock_hook": bool(c.lock_hook),
                "tls13": bool(c.tls13), "write_dup": bool(c.write_dup),
                "flags": self.ffi.string(c.flags).decode()}

    def check_tls(self, tls: int) -> None:
        if tls == 13 and not self.caps()["tls13"]:
            raise Unsupported(f"{self.name}: this build has no TLS 1.3 (use --tls 1.2)")

    def ctx_new(self, cert: str, key: str, tls: int, ciphers: str, tickets: bool):
        self.check_tls(tls)
        err = self.ffi.new("char[256]")
        ctx = self.lib.tlsh_lib_ctx_new(cert.encode(), key.encode(), tls, ciphers.encode(),
                                        int(tickets), err, 256)
        if ctx == self.ffi.NULL:
            raise self.ctx_error(self.ffi.string(err).decode(errors="replace"), ciphers)
        return ctx

    def ctx_error(self, msg: str, ciphers: str) -> BackendError:
        """What a failed context means: a cipher list the build offers none of
        (BoringSSL has no CBC-SHA256 suites; the adapters' err convention in
        tlsh_lib.h) is unsupported, the rest errors."""
        if msg.startswith("cipher list"):
            return Unsupported(f"{self.name}: this build offers none of the TLS 1.2 ciphers "
                               f"{ciphers!r} ({msg})")
        return BackendError(f"{self.name}: " + msg)

    def ops(self):
        return self.lib.tlsh_lib_ops()


def availability() -> dict[str, tuple[bool, str]]:
    """name -> (built, reason) without loading any TLS library."""
    rep = native.build_report()
    out = {}
    for name, ext in registry().items():
        r = rep.get(ext)
        out[name] = (bool(r and r.get("built")), (r or {}).get("reason", "not built"))
        if out[name][0] and r.get("origin") == "user prefix" and not all(
                os.path.exists(r.get(k) or "") for k in ("path", "prefix")):
            out[name] = (False, "its files are gone (build it again: tlsharness libs add/build)")
    return out


def info(name: str) -> dict:
    """Build report entry of a library (version, prefix, path), no loading."""
    return native.build_report().get(registry().get(name, ""), {})


def get(name: str) -> Backend:
    """Load a backend (loads its TLS library: stand and probe processes only)."""
    reg = registry()
    if name not in reg:
        raise BackendError(f"unknown TLS library {name!r} (known: {', '.join(reg)})")
    ffi, lib = native.load(reg[name])
    be = Backend(name, ffi, lib)
    check_isolated(name)
    return be


TLS_SONAMES = ("libssl.so", "libcrypto.so", "libwolfssl.so", "libmbedtls.so", "libmbedcrypto.so",
               "libgnutls.so")


def loaded_tls_libraries() -> list[str]:
    """Paths of TLS libraries mapped into this process."""
    seen = []
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.split(None, 5)[-1].strip() if line.count(" ") >= 5 else ""
            base = os.path.basename(path)
            if any(base.startswith(s) for s in TLS_SONAMES) and path not in seen:
                seen.append(path)
    return seen


def check_isolated(name: str) -> None:
    """One library build per process: a variant must have loaded its own
    prefix's library, not a same-soname build that came first (two
    libcrypto.so.3 cannot coexist: the first loaded wins for the process)."""
    inf = info(name)
    prefix = inf.get("prefix")
    if not prefix:
        return
    kind_sonames = {"openssl": ("libssl.so", "libcrypto.so"), "wolfssl": ("libwolfssl.so",),
                    "mbedtls": ("libmbedtls.so",), "gnutls": ("libgnutls.so",)}[inf["kind"]]
    for path in loaded_tls_libraries():
        base = os.path.basename(path)
        if any(base.startswith(s) for s in kind_sonames) and not os.path.realpath(path).startswith(
                os.path.realpath(prefix)):
            raise BackendError(f"{name}: {path} is loaded instead of the build under {prefix} "
                               "(same soname loaded first); refusing to mix library builds")
