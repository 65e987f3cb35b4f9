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
    assert got == {"TLSH_RAND_SEED_INT": True, "TLSH_HAVE_RAND_METHOD": True,
                   "TLSH_MEM_FILE_LINE": True, "TLSH_MEM_PLAIN": False,
                   "TLSH_HAVE_THREAD_STOP": True, "TLSH_HAVE_ERR_MARK": True}


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
