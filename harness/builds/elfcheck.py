"""The static facts `tlsharness check` reports about one server binary or
module: which TLS library it links (and which version that library file
is), whether it exports a process-shared pthread_mutex_init /
pthread_rwlock_init override (and whether that override calls
pthread_*attr_setpshared with PTHREAD_PROCESS_SHARED), whether it registers
an atfork handler, stops OpenSSL's thread state, asks for
OPENSSL_INIT_NO_ATEXIT, and points the library's allocator at its own.

Facts about the file only: what they mean for safety is the measured
matrix's business (harness/analysis/measured_lookup.py).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from harness.builds import elfread
from harness.builds.elfread import Elf, ElfError

# soname prefix -> library family
SONAMES = (("libcrypto.so", "openssl"), ("libssl.so", "openssl"), ("libwolfssl.so", "wolfssl"),
           ("libmbedtls.so", "mbedtls"), ("libmbedcrypto.so", "mbedtls"),
           ("libgnutls.so", "gnutls"))
# family -> a symbol whose definition means the library is linked in statically
STATIC_MARK = {"openssl": "SSL_CTX_new", "wolfssl": "wolfSSL_CTX_new",
               "mbedtls": "mbedtls_ssl_setup", "gnutls": "gnutls_init"}
VERSION_RE = {
    "openssl": rb"(OpenSSL|LibreSSL) (\d+\.\d+\.\d+[a-z]?)(?:[ \w]*\d{4})?\x00",
    "wolfssl": rb"wolfSSL (\d+\.\d+\.\d+)\x00",
    "mbedtls": rb"mbed TLS (\d+\.\d+\.\d+)",
    "gnutls": rb"\x00(3\.\d+\.\d+)\x00",
}
OVERRIDES = {"pthread_mutex_init": "pthread_mutexattr_setpshared",
             "pthread_rwlock_init": "pthread_rwlockattr_setpshared"}
PTHREAD_PROCESS_SHARED = 1
OPENSSL_INIT_NO_ATEXIT = 0x00080000
FLAG_STRING = rb"TLS_PTHREAD_MUTEX_SHARED"
SERVER_RE = rb"\x00(kamailio|opensips) (\d+\.\d+\.\d+[\w.-]*) \("


@dataclass
class Lib:
    family: str
    soname: str                       # "(static)" when linked in
    path: Path | None
    how: str                          # how the file was found
    version: str | None
    version_how: str


@dataclass
class Facts:
    path: Path
    server: str | None = None         # "kamailio 5.6.3", from its version string
    libs: list[Lib] = field(default_factory=list)
    overrides: dict[str, str] = field(default_factory=dict)   # name -> what it does
    pshared: dict[str, bool | None] = field(default_factory=dict)
    flag_string: bool = False
    atfork: str | None = None
    thread_stop: str | None = None
    init: str | None = None
    no_atexit: bool | None = None
    no_atexit_how: str = ""
    allocator: str | None = None
    notes: list[str] = field(default_factory=list)


def lib_version(family: str, path: Path, sibling_only: bool = False) -> tuple[str | None, str]:
    """The version the library file says it is, and how that was read (a
    libssl without one: that of the libcrypto it needs, found beside it or by
    its own loader search)."""
    m = elfread.strings_match(path, VERSION_RE[family])
    if m:
        text = m.group(0).strip(b"\x00").decode(errors="replace")
        return text, f"version string in {path.name}"
    if family == "openssl" and path.name.startswith("libssl") and not sibling_only:
        try:                          # libssl's version text lives in its libcrypto
            e = elfread.read(path)
        except ElfError:
            return None, "libssl unreadable"
        for so in e.needed:
            if so.startswith("libcrypto"):
                p, how = elfread.resolve(so, e)
                if p:
                    v, _ = lib_version(family, p)
                    return v, f"version string in its {so} ({how})"
    return None, f"no version string in {path.name} (soname {path.name})"


def _linked(e: Elf) -> list[Lib]:
    libs = []
    for so in e.needed:
        fam = next((f for pre, f in SONAMES if so.startswith(pre)), None)
        if fam:
            p, how = elfread.resolve(so, e)
            libs.append(Lib(fam, so, p, f"DT_NEEDED {so}, {how}", None, "file not found"))
    crypto = [x for x in libs if x.soname.startswith("libcrypto") and x.path]
    for lib in libs:                  # libcrypto first: libssl's version text lives there
        if lib.path and not lib.soname.startswith("libssl"):
            lib.version, lib.version_how = lib_version(lib.family, lib.path)
    for lib in libs:
        if lib.path and lib.soname.startswith("libssl"):
            lib.version, lib.version_how = lib_version(lib.family, lib.path, bool(crypto))
            if not lib.version and crypto and crypto[0].version:
                lib.version = crypto[0].version        # the libcrypto loaded beside it
                lib.version_how = (f"no version string in {lib.path.name}; that of the "
                                   f"{crypto[0].soname} this file loads beside it")
    for lib in libs:                  # libmbedtls: its version text lives in libmbedcrypto
        kin = [x for x in libs if x.family == lib.family and x.version]
        if lib.path and not lib.version and kin:
            lib.version = kin[0].version
            lib.version_how = f"that of the {kin[0].soname} this file loads beside it"
    for fam, mark in STATIC_MARK.items():
        if e.exports(mark) and not any(x.family == fam for x in libs):
            v, vhow = lib_version(fam, e.path)
            libs.append(Lib(fam, "(static)", e.path, f"defines {mark}", v, vhow))
    return libs


def _override(e: Elf, name: str) -> tuple[str, bool | None]:
    """What an exported `name` does: calls the setpshared function with
    PTHREAD_PROCESS_SHARED (True), never calls it (False), or cannot tell."""
    sym = e.exports(name)
    if not sym.size:
        return "exported, size unknown: body not read", None
    lines = elfread.disassemble(e, sym.addr, sym.addr + sym.size)
    want = OVERRIDES[name]
    args = [elfread.reg_value_before(lines, i, "esi") for i, (_, t) in enumerate(lines)
            if elfread.call_target(t) == want]
    if not args:
        indirect = sum(1 for _, t in lines if re.match(r"(call|jmp)\s+\*", t))
        return (f"exported; its body ({sym.size} bytes) never calls {want}"
                + (f" ({indirect} indirect calls not followed)" if indirect else "")), False
    if PTHREAD_PROCESS_SHARED in args:
        return f"exported; calls {want}(.., PTHREAD_PROCESS_SHARED)", True
    if None not in args:
        return f"exported; calls {want} only with {sorted(set(args))}: not SHARED (1)", False
    shown = ", ".join("?" if a is None else str(a) for a in args)
    return f"exported; calls {want} with argument {shown}: cannot tell it is SHARED", None


def _referenced(e: Elf, name: str) -> int | None:
    """Calls/jumps to `name` in the file's code (None: could not disassemble)."""
    try:
        return sum(1 for _, t in elfread.disassemble(e) if elfread.call_target(t) == name)
    except ElfError:
        return None


def _init_flags(f: Facts, e: Elf) -> None:
    names = [n for n in ("OPENSSL_init_ssl", "OPENSSL_init_crypto") if e.imports(n)]
    if not names:
        return
    f.init = "imports " + ", ".join(names)
    try:
        lines = elfread.disassemble(e)
    except ElfError as err:
        f.no_atexit_how = str(err)
        return
    flags = [elfread.reg_value_before(lines, i, "edi") for i, (_, t) in enumerate(lines)
             if elfread.call_target(t) in names]
    known = [x for x in flags if x is not None]
    shown = ", ".join("?" if x is None else hex(x) for x in flags)
    if any(x & OPENSSL_INIT_NO_ATEXIT for x in known):
        f.no_atexit, f.no_atexit_how = True, f"an immediate flags argument has it ({shown})"
    elif known and len(known) == len(flags):
        f.no_atexit, f.no_atexit_how = False, f"no call's flags have it ({shown})"
    else:
        f.no_atexit_how = (f"flags not immediates ({shown or 'no direct call seen'})")


def _atfork_and_alloc(f: Facts, e: Elf) -> None:
    for n in ("pthread_atfork", "__register_atfork"):
        if e.imports(n):
            f.atfork = f"imports {n}"
    if e.imports("OPENSSL_thread_stop"):
        f.thread_stop = "imports OPENSSL_thread_stop"
    for n in ("CRYPTO_set_mem_functions", "wolfSSL_SetAllocators", "mbedtls_platform_set_calloc_free",
              "gnutls_global_set_mem_functions"):
        if e.imports(n):
            f.allocator = f"imports {n}"
        elif e.exports(n):           # linked in statically: is it called?
            k = _referenced(e, n)
            if k:
                f.allocator = f"calls its linked-in {n} ({k} call sites)"
            elif k is None:
                f.allocator = f"defines {n}; calls cannot tell (not disassembled)"


def facts(path: Path) -> Facts:
    """All the static facts of one ELF file (raises ElfError)."""
    e = elfread.read(path)
    f = Facts(path, libs=_linked(e))
    for name in OVERRIDES:
        if e.exports(name):
            f.overrides[name], f.pshared[name] = _override(e, name)
    f.flag_string = elfread.strings_match(path, FLAG_STRING) is not None
    m = elfread.strings_match(path, SERVER_RE)
    if m:
        f.server = f"{m.group(1).decode()} {m.group(2).decode()}"
    _atfork_and_alloc(f, e)
    _init_flags(f, e)
    return f


def interesting(f: Facts) -> bool:
    """Worth a line in a folder's listing: it touches TLS or locks."""
    return bool(f.libs or f.overrides or f.flag_string or f.atfork or f.init or f.allocator)
