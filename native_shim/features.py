"""Feature tests at build time: what an adapter's library offers, found by
compiling a few lines against its headers, never guessed from a version
number (LibreSSL and BoringSSL call themselves OpenSSL 2.0 or 1.1.1 and
differ in signatures: their RAND_METHOD callbacks keep OpenSSL 1.0's void
seed/add; LibreSSL's CRYPTO_set_mem_functions takes no file and line;
BoringSSL has none and replaces its allocator at link time).

Each found feature becomes -D<NAME>=1 for the adapter's sources; one not
found is left undefined, and the adapter leaves out (NULL in its optional
table) what needs it.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

OPENSSL = {
    # RAND_METHOD.seed returns int (OpenSSL 1.1+), not void (1.0, LibreSSL, BoringSSL)
    "TLSH_RAND_SEED_INT": """
        #include <openssl/rand.h>
        static int s(const void *b, int n) { (void)b; (void)n; return 1; }
        static int a(const void *b, int n, double e) { (void)b; (void)n; (void)e; return 1; }
        static RAND_METHOD m = { s, 0, 0, a, 0, 0 };
        void *tlsh_f(void) { return &m; }""",
    # a replaceable RAND method of the classic shape (bytes take an int
    # length; BoringSSL's take size_t) and the library's default one to wrap
    "TLSH_HAVE_RAND_METHOD": """
        #define OPENSSL_SUPPRESS_DEPRECATED
        #include <openssl/rand.h>
        static int b(unsigned char *p, int n) { (void)p; (void)n; return 1; }
        static RAND_METHOD m = { .bytes = b, .pseudorand = b };
        int tlsh_f(void) { (void)m; return RAND_set_rand_method(RAND_OpenSSL()); }""",
    # CRYPTO_set_mem_functions with file and line (OpenSSL 1.1+)
    "TLSH_MEM_FILE_LINE": """
        #include <stddef.h>
        #include <openssl/crypto.h>
        static void *m(size_t n, const char *f, int l) { (void)n; (void)f; (void)l; return 0; }
        static void *r(void *p, size_t n, const char *f, int l) { (void)p; (void)n; (void)f; (void)l; return 0; }
        static void fr(void *p, const char *f, int l) { (void)p; (void)f; (void)l; }
        int tlsh_f(void) { return CRYPTO_set_mem_functions(m, r, fr); }""",
    # CRYPTO_set_mem_functions without them (LibreSSL)
    "TLSH_MEM_PLAIN": """
        #include <stddef.h>
        #include <openssl/crypto.h>
        static void *m(size_t n) { (void)n; return 0; }
        static void *r(void *p, size_t n) { (void)p; (void)n; return 0; }
        static void fr(void *p) { (void)p; }
        int tlsh_f(void) { return CRYPTO_set_mem_functions(m, r, fr); }""",
    # the per-thread state cleanup (OpenSSL 1.1+): the atfork-stop mitigation
    "TLSH_HAVE_THREAD_STOP": """
        #include <openssl/crypto.h>
        void tlsh_f(void) { OPENSSL_thread_stop(); }""",
    # OPENSSL_atexit, the public face of the cleanup that OPENSSL_init_crypto
    # registers with atexit() (1.1.0 to 3.x): 4.0 removed both (its cleanup
    # runs only after an explicit OPENSSL_cleanup), so exit() frees nothing of
    # the library's; BoringSSL and LibreSSL declare no OPENSSL_atexit either
    "TLSH_HAVE_ATEXIT_CLEANUP": """
        #include <openssl/crypto.h>
        static void h(void) {}
        int tlsh_f(void) { return OPENSSL_atexit(h); }""",
    # error-queue marks, used to leave the parent's error state as a module would
    "TLSH_HAVE_ERR_MARK": """
        #include <openssl/err.h>
        int tlsh_f(void) { ERR_set_mark(); return ERR_pop_to_mark(); }""",
}

TESTS = {"openssl": OPENSSL}

# Hooks a library offers by leaving symbols for the application to define:
# weak, undefined references in its shared object (BoringSSL's allocator).
# Read from the library file itself, as the dynamic linker will.
WEAK = {"openssl": {"TLSH_MEM_LINK_TIME": ("crypto", ("OPENSSL_memory_alloc",
                                                    "OPENSSL_memory_free",
                                                    "OPENSSL_memory_get_size"))}}


def _library(stem: str, libdirs: list[str], cc: str) -> Path | None:
    for d in libdirs:
        if (Path(d) / f"lib{stem}.so").exists():
            return Path(d) / f"lib{stem}.so"
    r = subprocess.run([cc, f"-print-file-name=lib{stem}.so"], capture_output=True, text=True,
                       timeout=60)
    p = Path(r.stdout.strip())
    return p if r.returncode == 0 and p.is_absolute() and p.exists() else None


def weak_undefined(path: Path) -> set[str]:
    """The weak undefined dynamic symbols of a shared object (nm -D)."""
    r = subprocess.run(["nm", "-D", "--undefined-only", str(path)], capture_output=True,
                       text=True, timeout=60)
    return {parts[1] for parts in (l.split() for l in r.stdout.splitlines())
            if len(parts) == 2 and parts[0] in ("w", "v")}

# what makes a feature test fail: an undeclared function, a callback of
# another signature, a void value used
STRICT = ["-fsyntax-only", "-Werror=implicit-function-declaration",
          "-Werror=incompatible-pointer-types", "-Werror=int-conversion"]


def detect(kind: str, cflags: list[str], cc: str | None = None,
           libdirs: list[str] | None = None) -> dict[str, bool]:
    """Each feature of `kind`'s adapter: found (True) or not, with the
    include flags and library directories of the build at hand."""
    tests = TESTS.get(kind, {})
    cc = cc or shutil.which("cc") or "cc"
    found = {}
    for name, (stem, symbols) in WEAK.get(kind, {}).items():
        lib = _library(stem, libdirs or [], cc)
        found[name] = bool(lib) and set(symbols) <= weak_undefined(lib)
    with tempfile.TemporaryDirectory(prefix="tlsh-feature-") as d:
        for name, code in tests.items():
            src = Path(d) / f"{name}.c"
            src.write_text(code.strip() + "\n")
            r = subprocess.run([cc, *STRICT, *cflags, str(src)], capture_output=True, text=True,
                               timeout=60)
            found[name] = r.returncode == 0
    return found


def defines(found: dict[str, bool]) -> list[str]:
    return [f"-D{n}=1" for n, ok in sorted(found.items()) if ok]
