"""OpenSSL backend (system libssl/libcrypto 3.0, or another build)."""
from __future__ import annotations

from harness.backends import BackendError


class OpenSSLBackend:
    name = "openssl"

    def __init__(self, ffi, lib):
        self.ffi, self.lib = ffi, lib

    def hook(self, arena) -> bool:
        # CRYPTO_set_mem_functions returns 0 once libcrypto has allocated
        # anything, e.g. when Python's ssl or hashlib was imported first.
        return self.lib.tlsh_openssl_hook(arena) == 1

    def init(self) -> None:
        if self.lib.tlsh_openssl_init() != 1:
            raise BackendError("OPENSSL_init_ssl failed")

    def version(self) -> str:
        return self.ffi.string(self.lib.tlsh_openssl_version()).decode()

    def ctx_new(self, cert: str, key: str, tls: int, ciphers: str, tickets: bool):
        err = self.ffi.new("char[256]")
        ctx = self.lib.tlsh_openssl_ctx_new(cert.encode(), key.encode(), tls,
                                            ciphers.encode(), int(tickets), err, 256)
        if ctx == self.ffi.NULL:
            raise BackendError(self.ffi.string(err).decode(errors="replace"))
        return ctx

    def ops(self):
        return self.lib.tlsh_openssl_ops()


def make(ffi, lib) -> OpenSSLBackend:
    return OpenSSLBackend(ffi, lib)
