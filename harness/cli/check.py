"""`check`: a static check of a server build before any load — which TLS
library each file links (and which version that file is), the process-shared
lock override, the atfork handler, OPENSSL_INIT_NO_ATEXIT, the allocator —
then what this project measured about those versions (each line naming its
source: the run history or a docs/measured.md section).  Reads the files
with binutils; never loads or runs them.
"""
from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

from harness.verdicts import EXIT_USAGE

MAX_DEPTH = 2                        # a build folder: its sbin/ and modules/ are enough


def _elf_files(folder: Path) -> list[Path]:
    from harness.builds import elfread
    out = []
    for p in sorted(folder.rglob("*")):
        depth = len(p.relative_to(folder).parts)
        if depth <= MAX_DEPTH and p.is_file() and not p.is_symlink() and elfread.is_elf(p):
            out.append(p)
    return out


def _inputs(paths: list[str]) -> tuple[list[tuple[Path, bool]], list[str]]:
    """(file, named by the user) pairs, and one error line per bad input."""
    from harness.builds import elfread
    files, errors = [], []
    for text in paths:
        p = Path(text)
        if p.is_dir():
            found = _elf_files(p)
            if not found:
                errors.append(f"{text}: a folder holding no ELF file (binary or .so) "
                              f"within {MAX_DEPTH} levels")
            files += [(f, False) for f in found]
        elif not p.exists():
            errors.append(f"{text}: no such file")
        elif not p.is_file() or not elfread.is_elf(p):
            errors.append(f"{text}: not an ELF file (give a server binary, a module .so or a "
                          f"folder of them)")
        else:
            files.append((p, True))
    return files, errors


def _stand_inputs() -> tuple[list[tuple[Path, bool]], dict]:
    from harness.builds import native
    folder = Path(native.__file__).resolve().parent.parent / "_native"
    try:
        build = json.loads((folder / "build.json").read_text())
    except (OSError, ValueError):
        build = {}
    return [(p, False) for p in sorted(folder.glob("*.so"))], build


def _short(lib) -> str:
    how = lib.how.split(", ", 1)[-1]
    return f"{lib.soname} via {how}" if lib.soname != "(static)" else f"linked in ({how})"


def _lib_lines(f, short: bool = False) -> list[str]:
    """One line per library version: libssl and libcrypto of one version together."""
    groups: dict[tuple, list] = {}
    for lib in f.libs:
        groups.setdefault((lib.family, lib.version), []).append(lib)
    out = []
    for (_, version), libs in groups.items():
        where = "; ".join(_short(x) if short else f"{x.soname} -> {x.path} ({x.how})"
                          if x.soname != "(static)" else f"linked in ({x.how})" for x in libs)
        how = next((x.version_how for x in libs if x.version_how.startswith("version string in")),
                   libs[0].version_how)
        out.append(f"TLS library: {version or 'version unknown'} ({how}): {where}")
    return out


def _finding_lines(f, full: bool) -> list[str]:
    """One line per finding; `full` also says what was looked for and not found."""
    lines = _lib_lines(f, short=not full) or (["TLS library: none linked (no libssl/libcrypto/libwolfssl/"
                               "libmbedtls/libgnutls in DT_NEEDED, none linked in)"] if full else [])
    for name, what in f.overrides.items():
        lines.append(f"{name} override: {what}")
    if full and not f.overrides:
        lines.append("pthread_mutex_init/pthread_rwlock_init override: not exported by this file")
    if f.flag_string:
        lines.append("build flag string TLS_PTHREAD_MUTEX_SHARED: present in the file")
    pairs = [("atfork handler", f.atfork, "imports neither pthread_atfork nor __register_atfork"),
             ("OPENSSL_thread_stop", f.thread_stop, "not imported"),
             ("OpenSSL init", f.init, "imports neither OPENSSL_init_ssl nor OPENSSL_init_crypto"),
             ("allocator", f.allocator, "sets none (no CRYPTO_set_mem_functions, "
              "wolfSSL_SetAllocators, ...)")]
    for label, fact, absent in pairs:
        if fact or (full and f.libs):
            lines.append(f"{label}: {fact or absent}")
    if f.init:
        state = {True: "asked for", False: "not asked for", None: "cannot tell"}[f.no_atexit]
        lines.append(f"OPENSSL_INIT_NO_ATEXIT: {state}: {f.no_atexit_how}")
    return lines


def _series(checked) -> list[tuple[str, str, str]]:
    """(name, major.minor, model text) of every library and server version seen."""
    from harness.analysis import measured_lookup as ml
    seen: list[tuple[str, str, str]] = []
    for f in checked:
        for lib in f.libs:
            s = ml.series_of(lib.family, lib.version)
            if s and s not in [x[:2] for x in seen]:
                seen.append((*s, f"{s[0]} {s[1]} in a shared-memory multi-process server"))
        s = ml.series(f.server) if f.server else None
        if s and s not in [x[:2] for x in seen]:
            seen.append((*s, f"{s[0]} {s[1]}"))
    return seen


def _summary_lines(checked) -> list[str]:
    lines = []
    forced = [f.path.name for f in checked if any(f.pshared.values())]
    other = [f.path.name for f in checked if f.overrides and not any(f.pshared.values())]
    libs = [f for f in checked if f.libs]
    lines.append("process-shared override: " + (f"forces PTHREAD_PROCESS_SHARED in {', '.join(forced)}"
                 if forced else "none that forces PTHREAD_PROCESS_SHARED in the files given")
                 + (f"; exported without that: {', '.join(other)}" if other else ""))
    if not libs:
        lines.append("TLS library: none of the files given links one (give the TLS module too)")
    return lines


def _gather(files) -> tuple[list, list[str]]:
    from harness.builds import elfcheck
    checked, errors = [], []
    for path, named in files:
        try:
            checked.append((elfcheck.facts(path), named))
        except elfcheck.ElfError as e:
            errors.append(str(e))
    return checked, errors


def _measured_lines(model: str, name: str, majmin: str, db: Path) -> list[str]:
    from harness.analysis import measured_lookup as ml
    lines = ml.doc_lines(name, majmin) + [ml.history_line(db, name, majmin)]
    if all(ln.endswith("not measured here") for ln in lines):
        return [f"measured about {model}: not measured here (no docs/measured.md section on it, "
                f"no judged run in {db})"]
    return [f"measured about {model}:"] + [f"  {ln}" for ln in lines]


def _print(checked, quiet: int, ns) -> None:
    from harness.analysis import measured_lookup as ml
    for f, named in checked:
        lines = _finding_lines(f, named)
        if named:
            print(f"{f.path}" + (f"  [{f.server}]" if f.server else ""))
            for ln in lines:
                print(f"  {ln}")
        elif lines:                    # a folder's member: one line
            print(f"{f.path.name}: " + " | ".join(lines))
    if quiet:
        print(f"({quiet} more ELF files: no TLS library, lock override or TLS import)")
    facts = [f for f, _ in checked]
    print("build as a whole:")
    for ln in _summary_lines(facts):
        print(f"  {ln}")
    db = ml.history_db(ns.db)
    for name, majmin, model in _series(facts):
        for ln in _measured_lines(model, name, majmin, db):
            print(ln)


def _stand_notes(build: dict) -> None:
    built = [f"{name.removeprefix('_tlsh_')} {b['version']}" for name, b in build.items()
             if isinstance(b, dict) and b.get("built") and b.get("version")]
    print(f"  build.json says built against: {', '.join(built) or 'nothing recorded'}")
    print("  the stand's override: libtlsh_pshared.so, LD_PRELOADed with --mitigate pshared")


def cmd_check(ns, argv) -> int:
    if not ns.files and not ns.stand:
        print("tlsharness: error: check takes SERVER-BINARY-OR-MODULE [...] or --stand",
              file=sys.stderr)
        return EXIT_USAGE
    files, errors = _inputs(ns.files)
    build = {}
    if ns.stand:
        more, build = _stand_inputs()
        if not more:
            errors.append("--stand: no harness/_native/*.so (run `make setup` first)")
        files += more
    if not errors:
        picked, errors = _gather(files)
    for e in errors:
        print(f"tlsharness: error: {e}", file=sys.stderr)
    if errors:
        return EXIT_USAGE
    from harness.builds import elfcheck
    shown = [(f, n) for f, n in picked if n or elfcheck.interesting(f)]
    if ns.json:
        print(json.dumps([asdict(f) for f, _ in shown], indent=2, default=str))
        return 0
    if ns.stand:
        print("the stand (harness/_native):")
        _stand_notes(build)
    _print(shown, len(picked) - len(shown), ns)
    return 0


def add_parsers(sub) -> None:
    c = sub.add_parser("check", help="static check of a server build (binary, module .so or "
                       "a folder of them): TLS library version, pshared override, atfork, "
                       "allocator, and what was measured about them")
    c.add_argument("files", nargs="*", metavar="SERVER-BINARY-OR-MODULE",
                   help="a server binary, a module .so, or a folder holding them")
    c.add_argument("--stand", action="store_true", help="also check the project's own stand "
                   "(harness/_native/*.so, build.json, libtlsh_pshared.so)")
    c.add_argument("--db", help="the run history to cite (default: results/history.sqlite of "
                   "this checkout, or $TLSH_HISTORY_DB)")
    c.add_argument("--json", action="store_true", help="print the facts of each file as JSON")
    c.set_defaults(fn=cmd_check)
