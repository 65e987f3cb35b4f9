"""Build-time feature tests (native_shim/features.py): the OpenSSL adapter
learns what its library offers by compiling against its headers, so that it
builds against OpenSSL's forks too (LibreSSL, BoringSSL)."""
import shutil

import pytest

from native_shim import features

pytestmark = pytest.mark.skipif(not shutil.which("cc"), reason="no C compiler")

LIBRESSL_LIKE = {   # the signatures that stopped the adapter's build with LibreSSL 4.3
    "openssl/rand.h": """
        typedef struct rand_meth_st {
            void (*seed)(const void *buf, int num);
            int (*bytes)(unsigned char *buf, int num);
            void (*cleanup)(void);
            void (*add)(const void *buf, int num, double entropy);
            int (*pseudorand)(unsigned char *buf, int num);
            int (*status)(void);
        } RAND_METHOD;
        int RAND_set_rand_method(const RAND_METHOD *meth);
        const RAND_METHOD *RAND_OpenSSL(void);""",
    "openssl/crypto.h": """
        #include <stddef.h>
        int CRYPTO_set_mem_functions(void *(*m)(size_t), void *(*r)(void *, size_t),
                                     void (*f)(void *));""",
    "openssl/err.h": "int ERR_set_mark(void);\nint ERR_pop_to_mark(void);",
}


def test_the_system_openssl_has_every_feature():
    got = features.detect("openssl", [])
    assert got == {"TLSH_MEM_LINK_TIME": False,      # a setter, no weak symbols to define
                   "TLSH_RAND_SEED_INT": True, "TLSH_HAVE_RAND_METHOD": True,
                   "TLSH_MEM_FILE_LINE": True, "TLSH_MEM_PLAIN": False,
                   "TLSH_HAVE_THREAD_STOP": True, "TLSH_HAVE_ERR_MARK": True,
                   "TLSH_HAVE_ATEXIT_CLEANUP": True}   # 3.0 registers its cleanup with atexit


def test_a_fork_with_older_signatures_is_found_out(tmp_path):
    for name, text in LIBRESSL_LIKE.items():
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text + "\n")
    got = features.detect("openssl", [f"-I{tmp_path}"])
    assert got["TLSH_RAND_SEED_INT"] is False          # void seed/add: the other wrappers
    assert got["TLSH_HAVE_RAND_METHOD"] is True
    assert got["TLSH_MEM_FILE_LINE"] is False and got["TLSH_MEM_PLAIN"] is True
    assert got["TLSH_HAVE_THREAD_STOP"] is False       # atfork-stop: NULL in the optional table
    assert got["TLSH_HAVE_ERR_MARK"] is True
    assert features.defines(got) == ["-DTLSH_HAVE_ERR_MARK=1", "-DTLSH_HAVE_RAND_METHOD=1",
                                     "-DTLSH_MEM_PLAIN=1"]


def test_headers_without_any_of_it(tmp_path):
    (tmp_path / "openssl").mkdir()
    for h in ("rand.h", "crypto.h", "err.h"):
        (tmp_path / "openssl" / h).write_text("/* nothing */\n")
    assert not any(features.detect("openssl", [f"-I{tmp_path}"]).values())


BORINGSSL_LIKE_RAND = """
    #include <stddef.h>
    #include <stdint.h>
    typedef struct rand_meth_st {
        void (*seed)(const void *buf, int num);
        int (*bytes)(uint8_t *buf, size_t num);
        void (*cleanup)(void);
        void (*add)(const void *buf, int num, double entropy);
        int (*pseudorand)(uint8_t *buf, size_t num);
        int (*status)(void);
    } RAND_METHOD;
    int RAND_set_rand_method(const RAND_METHOD *meth);
    RAND_METHOD *RAND_OpenSSL(void);"""


def test_a_rand_method_of_another_shape_is_left_out(tmp_path):
    """BoringSSL's RAND_METHOD takes size_t lengths (and its setter does
    nothing): the adapter's int-length wrapper must not be built against it."""
    (tmp_path / "openssl").mkdir()
    (tmp_path / "openssl" / "rand.h").write_text(BORINGSSL_LIKE_RAND + "\n")
    got = features.detect("openssl", [f"-I{tmp_path}"])
    assert got["TLSH_HAVE_RAND_METHOD"] is False and got["TLSH_RAND_SEED_INT"] is False


def _shared_object(tmp_path, name: str, code: str):
    import subprocess
    src = tmp_path / f"{name}.c"
    src.write_text(code)
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(tmp_path / f"{name}.so"), str(src)],
                   check=True, capture_output=True, timeout=60)


WEAK_ALLOC = """
    #include <stddef.h>
    void *OPENSSL_memory_alloc(size_t n) __attribute__((weak));
    void OPENSSL_memory_free(void *p) __attribute__((weak));
    size_t OPENSSL_memory_get_size(void *p) __attribute__((weak));
    void *OPENSSL_malloc(size_t n) {
        if (OPENSSL_memory_alloc && OPENSSL_memory_free && OPENSSL_memory_get_size)
            return OPENSSL_memory_alloc(n);
        return 0;
    }
"""


def test_link_time_allocator_symbols_are_read_from_the_library(tmp_path):
    """BoringSSL's allocator hook is three weak references that the
    application defines: found in the library file, as the loader sees it."""
    _shared_object(tmp_path, "libcrypto", WEAK_ALLOC)
    assert features.detect("openssl", [], libdirs=[str(tmp_path)])["TLSH_MEM_LINK_TIME"] is True
    # the same library defining one of them itself: nothing left to define
    _shared_object(tmp_path, "libcrypto", WEAK_ALLOC.replace(
        "size_t OPENSSL_memory_get_size(void *p) __attribute__((weak));",
        "size_t OPENSSL_memory_get_size(void *p) { (void)p; return 0; }"))
    assert features.detect("openssl", [], libdirs=[str(tmp_path)])["TLSH_MEM_LINK_TIME"] is False
