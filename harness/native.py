"""Locating and loading the compiled cffi extensions.

The controller loads only ``_tlsh_core`` (no TLS library).  TLS extensions
are loaded by the stand and load generator processes, never here.
"""
from __future__ import annotations

import importlib
import json
from pathlib import Path

NATIVE_DIR = Path(__file__).resolve().parent / "_native"


class NativeMissing(RuntimeError):
    """An extension was not built."""


def build_report() -> dict:
    try:
        return json.loads((NATIVE_DIR / "build.json").read_text())
    except (OSError, ValueError):
        return {}


def load(name: str):
    """Return (ffi, lib) of harness._native.<name>."""
    try:
        mod = importlib.import_module(f"harness._native.{name}")
    except ImportError as e:
        reason = build_report().get(name, {}).get("reason", "not built")
        raise NativeMissing(f"native extension {name} unavailable ({reason}); "
                            f"run 'make setup'") from e
    return mod.ffi, mod.lib


_core = None


def core():
    """The library-independent extension (arena, locks, status layout, SIP)."""
    global _core
    if _core is None:
        _core = load("_tlsh_core")
    return _core
