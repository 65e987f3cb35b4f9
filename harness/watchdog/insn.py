"""What a crashing x86-64 instruction needed of its memory operand.

A crashed process writes the first bytes of its faulting instruction
(native_shim/src/crash.c).  This reads just enough of the encoding to tell
whether the instruction demands a 16-byte-aligned memory operand: the
explicitly aligned moves (movaps, movapd, movdqa, movntdq, movntps and their
VEX forms) and the legacy SSE instructions with a 128-bit memory operand,
which fault on a misaligned address with a general-protection fault (SIGSEGV,
address 0).  Not a disassembler: it answers that one question or None.
"""
from __future__ import annotations

LEGACY_PREFIXES = {0xF0, 0xF2, 0xF3, 0x2E, 0x36, 0x3E, 0x26, 0x64, 0x65, 0x66, 0x67}

# two-byte opcodes (0F xx) that are explicit aligned moves, by mandatory prefix
ALIGNED_MOVES = {(None, 0x28): "movaps", (None, 0x29): "movaps", (0x66, 0x28): "movapd",
                 (0x66, 0x29): "movapd", (0x66, 0x6F): "movdqa", (0x66, 0x7F): "movdqa",
                 (0x66, 0xE7): "movntdq", (None, 0x2B): "movntps", (0x66, 0x2B): "movntpd"}

# 0F xx opcodes whose memory operand needs no 16-byte alignment (unaligned
# moves, scalar and 64-bit forms, non-SSE instructions of the 0F space)
UNALIGNED_OK = {0x10, 0x11, 0x12, 0x13, 0x16, 0x17, 0x2A, 0x2C, 0x2D, 0x2E, 0x2F, 0x6E, 0x7E,
                0xD6, 0xC3, 0xC4, 0xC5, 0xF0} | set(range(0x80, 0xC0)) | set(range(0x40, 0x50)) \
    | set(range(0x00, 0x10)) | set(range(0x18, 0x20)) | set(range(0x30, 0x38))


def _vex(code: bytes, i: int) -> str | None:
    """VEX-encoded aligned moves (vmovaps/vmovapd/vmovdqa): other VEX
    instructions take unaligned operands."""
    if code[i] == 0xC5 and len(code) > i + 3:
        pp, mmmmm, op, modrm = code[i + 1] & 3, 1, code[i + 2], code[i + 3]
    elif code[i] == 0xC4 and len(code) > i + 4:
        pp, mmmmm, op, modrm = code[i + 2] & 3, code[i + 1] & 0x1F, code[i + 3], code[i + 4]
    else:
        return None
    if mmmmm != 1 or modrm >> 6 == 3:
        return None
    name = {(0, 0x28): "vmovaps", (0, 0x29): "vmovaps", (1, 0x28): "vmovapd",
            (1, 0x29): "vmovapd", (1, 0x6F): "vmovdqa", (1, 0x7F): "vmovdqa",
            (1, 0xE7): "vmovntdq"}.get((pp, op))
    return name


def aligned_operand(code: bytes) -> str | None:
    """The instruction's name (or kind) if it requires a 16-byte-aligned
    memory operand, else None."""
    i, prefix = 0, None
    while i < len(code) and code[i] in LEGACY_PREFIXES:
        if code[i] in (0x66, 0xF2, 0xF3):
            prefix = code[i]
        i += 1
    if i < len(code) and code[i] in (0xC4, 0xC5):
        return _vex(code, i)
    if i < len(code) and 0x40 <= code[i] <= 0x4F:              # REX
        i += 1
    if i + 2 >= len(code) or code[i] != 0x0F:
        return None
    op = code[i + 1]
    if op in (0x38, 0x3A):                                      # three-byte SSE (aesenc, pshufb...)
        if i + 3 >= len(code) or prefix != 0x66 or code[i + 3] >> 6 == 3:
            return None
        return f"SSE 0f {op:02x} {code[i + 2]:02x} with a 128-bit memory operand"
    modrm = code[i + 2]
    if modrm >> 6 == 3:                                         # register operands only
        return None
    if (prefix, op) in ALIGNED_MOVES:
        return ALIGNED_MOVES[(prefix, op)]
    if prefix in (None, 0x66) and op >= 0x50 and op not in UNALIGNED_OK:
        if prefix is None and 0x60 <= op <= 0x7F or prefix is None and op >= 0xD0:
            return None                                         # MMX: 64-bit operands
        return f"SSE 0f {op:02x} with a 128-bit memory operand"
    return None


def parse(line: str) -> dict | None:
    """The crash file's 'ip 0x... code N insn xx xx ...' line."""
    parts = line.split()
    if len(parts) < 5 or parts[0] != "ip" or parts[2] != "code" or parts[4] != "insn":
        return None
    if parts[5:] == ["unreadable"]:      # a jump to NULL or to unmapped memory
        return {"ip": parts[1], "si_code": int(parts[3]) if parts[3].lstrip("-").isdigit() else 0,
                "insn": "unreadable", "aligned_operand": False}
    try:
        code = bytes(int(b, 16) for b in parts[5:])
        return {"ip": parts[1], "si_code": int(parts[3]), "insn": code.hex(" "),
                "aligned_operand": aligned_operand(code)}
    except ValueError:
        return None
