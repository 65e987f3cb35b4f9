"""TLS library backends: one Python module per library, one contract.

A backend wraps its cffi extension (``harness._native._tlsh_<lib>``) and is
only ever loaded inside a stand process.  The contract (see ``Backend``) is
what the stand needs; ``tests/test_backend_contract.py`` runs the same cases
against every built backend.
"""
from __future__ import annotations

import importlib
from typing import Protocol

from harness import native

# name -> (module, extension)
REGISTRY = {
    "openssl": ("harness.backends.openssl", "_tlsh_openssl"),
}


class Backend(Protocol):
    name: str
    ffi: object
    lib: object

    def hook(self, arena) -> bool:
        """Point the library's allocator at the arena; False if refused."""

    def init(self) -> None:
        """Library initialisation (after hooks, before contexts)."""

    def version(self) -> str: ...

    def ctx_new(self, cert: str, key: str, tls: int, ciphers: str, tickets: bool):
        """A server context; raises BackendError with the library's reason."""

    def ops(self):
        """The `struct tlsh_tls_ops *` for the worker loop."""


class BackendError(RuntimeError):
    pass


def names() -> list[str]:
    return sorted(REGISTRY)


def availability() -> dict[str, tuple[bool, str]]:
    """name -> (built, reason) without loading any TLS library."""
    rep = native.build_report()
    out = {}
    for name, (_, ext) in REGISTRY.items():
        r = rep.get(ext)
        out[name] = (bool(r and r.get("built")), (r or {}).get("reason", "not built"))
    return out


def get(name: str) -> Backend:
    """Load a backend (loads its TLS library: stand processes only)."""
    if name not in REGISTRY:
        raise BackendError(f"unknown TLS library {name!r} (known: {', '.join(names())})")
    mod, ext = REGISTRY[name]
    ffi, lib = native.load(ext)
    return importlib.import_module(mod).make(ffi, lib)
