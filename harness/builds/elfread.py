"""Reading an ELF file without running it: its dynamic section, its
dynamic symbols, where the loader would find a DT_NEEDED library, and a
bounded disassembly, through binutils (readelf, nm, objdump) run as
subprocesses.  Nothing here loads or executes the file (no `ldd`: ldd runs
the loader on the file, which a check of an untrusted build must not do).
"""
from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

TIMEOUT_S = 60
MAX_DISASM_BYTES = 64 << 20          # a larger file is not disassembled whole
DEFAULT_DIRS = ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64",
                "/lib", "/usr/lib")


class ElfError(ValueError):
    """The file cannot be read as an ELF file (one line for the user)."""


def is_elf(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def _tool(args: list[str]) -> str:
    try:
        p = subprocess.run(args, capture_output=True, text=True, errors="replace",
                           timeout=TIMEOUT_S)
    except FileNotFoundError:
        raise ElfError(f"{args[0]} not found (install binutils)") from None
    except subprocess.TimeoutExpired:
        raise ElfError(f"{args[0]} took over {TIMEOUT_S} s on {args[-1]}") from None
    if p.returncode != 0 and not p.stdout:
        first = (p.stderr.strip().splitlines() or ["failed"])[0]
        raise ElfError(f"{args[-1]}: {args[0]}: {first}")
    return p.stdout


@dataclass
class Sym:
    name: str
    addr: int
    size: int
    kind: str                   # nm's letter: T, W, D, B, ...


@dataclass
class Elf:
    path: Path
    needed: list[str] = field(default_factory=list)
    rpath: list[str] = field(default_factory=list)
    runpath: list[str] = field(default_factory=list)
    defined: dict[str, Sym] = field(default_factory=dict)
    undefined: set[str] = field(default_factory=set)
    _disasm: list[tuple[int, str]] | None = None

    def imports(self, name: str) -> bool:
        return name in self.undefined

    def exports(self, name: str) -> Sym | None:
        s = self.defined.get(name)
        return s if s and s.kind in "TWiu" else None


def read(path: Path) -> Elf:
    """The dynamic facts of one ELF file (raises ElfError)."""
    if not is_elf(path):
        raise ElfError(f"{path}: not an ELF file")
    e = Elf(path)
    for line in _tool(["readelf", "-dW", str(path)]).splitlines():
        m = re.search(r"\((NEEDED|RPATH|RUNPATH)\)\s+.*?\[(.*)\]", line)
        if not m:
            continue
        if m.group(1) == "NEEDED":
            e.needed.append(m.group(2))
        else:
            getattr(e, m.group(1).lower()).extend(x for x in m.group(2).split(":") if x)
    out = _tool(["nm", "-D", "-S", "--with-symbol-versions", str(path)])
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in ("U", "w", "v"):
            e.undefined.add(parts[1].split("@")[0])
        elif len(parts) >= 3:
            size = int(parts[1], 16) if len(parts) == 4 else 0
            name = parts[-1].split("@")[0]
            e.defined[name] = Sym(name, int(parts[0], 16), size, parts[-2])
    return e


def _ldconfig_cache() -> dict[str, str]:
    try:
        out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True,
                             timeout=TIMEOUT_S).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    cache: dict[str, str] = {}
    for line in out.splitlines():
        m = re.match(r"\s*(\S+) \((.*?)\) => (\S+)", line)
        if m and "x86-64" in m.group(2) and m.group(1) not in cache:
            cache[m.group(1)] = m.group(3)
    return cache


_CACHE: dict[str, str] | None = None


def resolve(soname: str, elf: Elf) -> tuple[Path | None, str]:
    """Where the loader would find `soname` for `elf`, and how: DT_RPATH (when
    there is no DT_RUNPATH), DT_RUNPATH, ld.so.cache, the default folders.
    LD_LIBRARY_PATH is left out: it is the environment of a run, not the build."""
    global _CACHE
    origin = str(elf.path.resolve().parent)

    def look(dirs, how):
        for d in dirs:
            d = d.replace("$ORIGIN", origin).replace("${ORIGIN}", origin)
            p = Path(d) / soname
            if p.exists():
                return p, f"{how} {d}"
        return None
    if "/" in soname:
        p = Path(soname)
        return (p, "DT_NEEDED path") if p.exists() else (None, "DT_NEEDED path missing")
    found = None if elf.runpath else look(elf.rpath, "DT_RPATH")
    found = found or look(elf.runpath, "DT_RUNPATH")
    if found:
        return found
    if _CACHE is None:
        _CACHE = _ldconfig_cache()
    if soname in _CACHE and Path(_CACHE[soname]).exists():
        return Path(_CACHE[soname]), "ld.so.cache"
    return look(DEFAULT_DIRS, "default folder") or (None, "not found by the loader's search")


_INSN = re.compile(r"^\s*([0-9a-f]+):\s+(.*)$")


def disassemble(elf: Elf, start: int | None = None, stop: int | None = None) -> list[tuple[int, str]]:
    """(address, instruction text) lines, of one range or of the whole file
    (cached); ElfError when the whole file is too large to disassemble."""
    args = ["objdump", "-d", "--no-show-raw-insn", "-w"]
    if start is not None:
        args += [f"--start-address={start:#x}", f"--stop-address={stop:#x}"]
    elif elf._disasm is not None:
        return elf._disasm
    elif elf.path.stat().st_size > MAX_DISASM_BYTES:
        raise ElfError(f"{elf.path}: over {MAX_DISASM_BYTES >> 20} MB, not disassembled")
    lines, in_plt = [], False
    for line in _tool(args + [str(elf.path)]).splitlines():
        if line.startswith("Disassembly of section "):    # the PLT's own jumps are not calls
            in_plt = line.split()[-1].startswith(".plt")
            continue
        m = None if in_plt else _INSN.match(line)
        if m:
            lines.append((int(m.group(1), 16), m.group(2).strip()))
    if start is None:
        elf._disasm = lines
    return lines


_TARGET = re.compile(r"<([A-Za-z_][\w.]*?)(?:@[\w.@]*)?(?:[+-]0x[0-9a-f]+)?>\s*$")


def call_target(text: str) -> str | None:
    """The symbol a call/jmp goes to, as objdump names it (`<f@plt>`, or the
    GOT slot's symbol of a `call *x(%rip)  # addr <f@GLIBC_2.34>`)."""
    if not re.match(r"(call|jmp|bnd jmp|notrack jmp)\w*\s", text):
        return None
    m = _TARGET.search(text)
    return m.group(1) if m else None


def reg_value_before(lines: list[tuple[int, str]], i: int, reg32: str) -> int | None:
    """The immediate last written into a register (e.g. `esi`) before line i,
    looking back no further than the previous call; None if not an immediate."""
    for _, text in reversed(lines[max(0, i - 12):i]):
        if text.startswith("call"):
            return None
        r64 = "r" + reg32[1:]
        m = re.match(rf"mov[lq]?\s+\$(0x[0-9a-f]+|\d+),%({reg32}|{r64})$", text)
        if m:
            return int(m.group(1), 0)
        if re.match(rf"xor\s+%({reg32}|{r64}),%({reg32}|{r64})$", text):
            return 0
        if re.search(rf",%({reg32}|{r64})$", text):     # written by something else
            return None
    return None


def strings_match(path: Path, pattern: bytes, limit: int = 200 << 20) -> re.Match | None:
    """The first match of a bytes regex in the file (read whole, up to `limit`)."""
    try:
        if os.path.getsize(path) > limit:
            return None
        return re.search(pattern, path.read_bytes())
    except OSError:
        return None
