"""Stacks, taken only after the verdict.

ptrace can wake a waiter that lost its wake-up and destroy the evidence (a
prototype saw 15 of 15 stuck workers resume after a dump), so: snapshot /proc
first, dump each process under a timeout, sample /proc again, and record
whether the state changed.  eu-stack for native code (all stand processes
run C loops), py-spy --native for a Python process when installed, gdb as a
last resort.  A crashed process cannot be dumped: workers write their own
stack when they crash (stacks/crash-*.txt).
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from harness.watchdog import insn, procfs

FRAME_RE = re.compile(r"^#\d+\s+0x[0-9a-f]+\s+(?:in\s+)?([^\s(]+)")
PYSPY_RE = re.compile(r"^\s+([\w.<>]+) \(")
BT_RE = re.compile(r"\(([A-Za-z_][\w.@]*)\+0x[0-9a-f]+\)")


def parse_frames(text: str) -> list[str]:
    """Function names, innermost first, from eu-stack, gdb or backtrace output."""
    out = []
    for line in text.splitlines():
        m = FRAME_RE.match(line.strip())
        if m:
            out.append(m.group(1).split("@")[0])
            continue
        m = BT_RE.search(line)
        if m:
            out.append(m.group(1).split("@")[0])
            continue
        m = PYSPY_RE.match(line)
        if m:
            out.append(m.group(1))
    return out


def _pyspy() -> str | None:
    """py-spy from the project's venv or PATH."""
    import sys
    from pathlib import Path
    cand = Path(sys.executable).parent / "py-spy"
    return str(cand) if cand.exists() else shutil.which("py-spy")


def _dump(pid: int, timeout: float, python: bool = False) -> tuple[str, str]:
    spy = _pyspy() if python else None
    if spy:                                  # a Python process: Python and native frames
        try:
            r = subprocess.run([spy, "dump", "--native", "--pid", str(pid)], capture_output=True,
                               text=True, timeout=timeout)
            if r.returncode == 0:
                return "py-spy", r.stdout
        except subprocess.TimeoutExpired:
            pass
    if shutil.which("eu-stack"):
        cmd, tool = ["eu-stack", "-p", str(pid)], "eu-stack"
    elif shutil.which("gdb"):
        cmd, tool = ["gdb", "-p", str(pid), "-batch", "-nx", "-ex", "thread apply all bt"], "gdb"
    else:
        return "none", "no stack tool installed (apt-get install elfutils)"
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        return tool, r.stdout + r.stderr
    except subprocess.TimeoutExpired:
        return tool, f"{tool} timed out after {timeout} s"


def _key(p: dict | None) -> tuple | None:
    if p is None:
        return None
    fx = (p.get("syscall") or {}).get("futex")
    return (p["state"], p.get("wchan"), fx["addr"] if fx else None)


def collect(procs: list[dict], out_dir: Path, timeout: float = 5.0) -> list[dict]:
    """procs: [{'pid', 'slot', 'role'}]. Writes out_dir/<role>-<slot>-<pid>.txt."""
    out_dir.mkdir(parents=True, exist_ok=True)
    before = {p["pid"]: procfs.sample(p["pid"]) for p in procs}   # all /proc first
    results = []
    for p in procs:
        pid = p["pid"]
        if before[pid] is None:
            continue
        tool, text = _dump(pid, timeout, python=p["role"] == "supervisor")
        path = out_dir / f"{p['role']}-{p['slot']}-{pid}.txt"
        path.write_text(text)
        results.append({**p, "tool": tool, "file": str(path), "frames": parse_frames(text)})
    for r in results:                   # after every dump: did ptrace change anything?
        a, b = before[r["pid"]], procfs.sample(r["pid"])
        r["before"] = _key(a)
        r["after"] = _key(b)
        r["changed"] = _key(a) != _key(b)
    return results


def crash_stacks(stacks_dir: Path) -> list[dict]:
    """Stacks the crashed workers wrote themselves."""
    out = []
    for f in sorted(stacks_dir.glob("crash-*.txt")):
        m = re.fullmatch(r"crash-(-?\d+)-(\d+)", f.stem)
        if not m:
            continue
        slot, pid = int(m.group(1)), int(m.group(2))
        text = f.read_text(errors="replace")
        eu = text.split("--- eu-stack", 1)
        frames = parse_frames(eu[1]) if len(eu) > 1 else []
        if "__restore_rt" in frames:          # drop the handler's own frames
            frames = frames[frames.index("__restore_rt") + 1:]
        lines = text.splitlines()
        fault = next((insn.parse(l) for l in lines[1:3] if l.startswith("ip ")), None)
        if fault and fault["insn"] == "unreadable" and "called from" in lines:
            # a call through a bad pointer: no unwinder gets past it; the
            # handler recorded the caller from the top of the stack
            frames = ["<bad code pointer>"] + parse_frames(lines[lines.index("called from") + 1])
        out.append({"slot": slot, "pid": pid, "file": str(f),
                    "role": "stand" if slot < 0 else "crashed",
                    "tool": "self (signal handler)", "changed": False,
                    "header": lines[0] if lines else "", "fault": fault,
                    "frames": frames or parse_frames(text)})
    return out


def summary(stacks: list[dict]) -> list[dict]:
    """What a verdict keeps of each stack: who, how it was taken, the top frames."""
    return [{k: t[k] for k in ("pid", "slot", "role", "tool", "file", "changed")}
            | {"top": t["frames"][:12]} for t in stacks if "pid" in t]


def fault_evidence(crashed: list[dict], arena_align: int) -> list[str]:
    """Evidence lines for crashes at an instruction that needs a 16-byte-aligned
    operand, when the arena hands out blocks 8 bytes off 16."""
    out = []
    for c in crashed:
        need = (c.get("fault") or {}).get("aligned_operand")
        if need and arena_align < 16:
            out.append(f"aligned vector access: pid {c['pid']} ({c['role']}) faulted at {need} "
                       f"(needs a 16-byte-aligned operand; ip {c['fault']['ip']}) while the arena "
                       f"gives blocks aligned to {arena_align} bytes")
    return out
