"""Locating and loading the compiled cffi extensions.

The controller loads only ``_tlsh_core`` (no TLS library).  TLS extensions
are loaded by the stand and load generator processes, never here.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]          # the checkout (or the installed tree)
NATIVE_DIR = ROOT / "harness" / "_native"


def user_dir() -> Path:
    """Per-user cache for builds the user adds (--lib-prefix, libs add): never
    the checkout.  $TLSH_CACHE, else $XDG_CACHE_HOME/tlsharness, else ~/.cache/tlsharness."""
    base = os.environ.get("TLSH_CACHE")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "tlsharness"


def user_native() -> Path:
    return user_dir() / "native"


class NativeMissing(RuntimeError):
    """An extension was not built."""


def _report(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def build_report() -> dict:
    """What `make setup` built (harness/_native) and what the user added (the cache)."""
    return {**_report(user_native() / "build.json"), **_report(NATIVE_DIR / "build.json")}


def load(name: str):
    """Return (ffi, lib) of harness._native.<name>."""
    try:
        mod = importlib.import_module(f"harness._native.{name}")
    except ImportError as e:
        user = _report(user_native() / "build.json").get(name, {})
        if user.get("path"):                     # a build the user added, in the cache
            spec = importlib.util.spec_from_file_location(f"harness._native.{name}", user["path"])
            if spec is None:
                raise NativeMissing(f"native extension {name}: {user['path']} is not a module") from e
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)         # ImportError with the loader's words on failure
            sys.modules[spec.name] = mod
            return mod.ffi, mod.lib
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


def clients() -> dict[str, str]:
    """The load generator's client builds: {library: extension}; the system
    OpenSSL's always, the fetched OpenSSL builds' where `make setup` made them."""
    out = {"system": "_tlsh_loadgen"}
    for ext, info in build_report().items():
        if info.get("client") and info.get("built"):
            out[info["client"]] = ext
    return out


# the client to use when the run does not say: the cheapest per handshake
CLIENT_PREFERENCE = ("openssl@1.1.1", "system")


def client_extension(choice: str) -> tuple[str, str]:
    """(extension, name) of the load generator's client for --client CHOICE."""
    have = clients()
    if choice == "auto":
        choice = next(c for c in CLIENT_PREFERENCE + ("system",) if c in have)
    if choice not in have:
        raise NativeMissing(f"--client {choice}: not built (built: {', '.join(have)}); "
                            "make setup fetches OpenSSL 1.1.1 for it")
    return have[choice], choice
