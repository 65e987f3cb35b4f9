"""What the server builds (OpenSIPS, Kamailio) share: a release tarball or a
source tree taken into a private work folder (tar members that would land
outside it refused), a work folder that lies inside the builds' own folder,
make steps that die with their parent, the first error of a build log, and
the sha256 of a source file.  Each build module has its own recipe and its
own error type (a subclass of SourceBuildError)."""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import tarfile
from pathlib import Path

from harness.builds import native
from harness.builds.safepath import BadName, check_name, inside


class SourceBuildError(RuntimeError):
    """A server build that cannot be done: the message is one line."""


def servers_dir() -> Path:
    return native.user_dir() / "servers"


def unpack(source: Path, work: Path, is_top, what: str, looked_for: str,
           err=SourceBuildError) -> Path:
    """SOURCE (a tree, copied; or a tarball, unpacked) into work/src; the
    folder at its top for which is_top(folder) holds, else err(one line)
    saying that no WHAT tree is in it (LOOKED_FOR not found at its top)."""
    src = work / "src"
    if source.is_dir():
        shutil.copytree(source, src, symlinks=True, ignore=shutil.ignore_patterns(".git"))
    elif source.is_file():
        try:
            with tarfile.open(source) as tf:
                tf.extractall(src, filter="data")
        except (tarfile.TarError, OSError, EOFError) as e:
            raise err(f"--from-source {source}: not a tarball that can be unpacked "
                      f"({str(e)[:120]})") from None
    else:
        raise err(f"--from-source {source}: no such file or directory")
    top = next((d for d in [src, *(d for d in src.iterdir() if d.is_dir())] if is_top(d)), None)
    if top is None:
        raise err(f"--from-source {source}: no {what} tree in it ({looked_for} not found at "
                  "its top)")
    return top


def work_folder(tag: str, err=SourceBuildError) -> tuple[Path, Path]:
    """(the builds' folder, a fresh work folder inside it for this process)."""
    root = servers_dir()
    root.mkdir(parents=True, exist_ok=True)
    work = root / f".work-{tag}-{os.getpid()}"
    if not inside(root, work):
        raise err(f"{work} is not inside {root}: refused")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    return root, work


def die_with_parent() -> None:
    """preexec_fn of a build step: SIGKILL when the tool that started it dies."""
    import ctypes
    import signal
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)       # PR_SET_PDEATHSIG


def first_error(log_path) -> str:
    lines = Path(log_path).read_text(errors="replace").splitlines()
    hits = [l for l in lines if re.search(r"\berror\b|Error \d|not found", l)]
    return (hits[0] if hits else (lines[-1] if lines else "no output")).strip()[:200]


def sha256(p: Path) -> str | None:
    if not p.is_file():
        return None
    h = hashlib.sha256()
    with p.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def recorded(server: str) -> list[dict]:
    """build.json of every build of SERVER ("opensips", "kamailio") in the cache."""
    import json
    out, root = [], servers_dir()
    for j in sorted(root.glob("*/build.json")) if root.is_dir() else []:
        try:
            info = json.loads(j.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(info, dict) and info.get("server") == server:
            out.append(info)
    return out


def find_named(name: str, have: list[dict], flag: str, err, hint: str = "") -> dict:
    """The build called NAME among HAVE; err(one line) naming the builds there
    are when none is (FLAG is the option the user typed)."""
    try:
        check_name(name, flag)
    except BadName as e:
        raise err(str(e)) from None
    hit = next((i for i in have if i["name"] == name), None)
    if hit is None:
        raise err(f"{flag} {name}: no such build (have: "
                  f"{', '.join(i['name'] for i in have) or 'none'}{hint})")
    return hit


def register(staged: Path, dest: Path, log_path: Path, info: dict) -> dict:
    """The staged build, with its log and build.json, moved into place: a build
    is listed only once it is complete."""
    import json
    shutil.move(str(log_path), staged / "build.log")
    (staged / "build.json").write_text(json.dumps(info, indent=2) + "\n")
    if dest.exists():
        shutil.rmtree(dest)
    shutil.move(str(staged), dest)
    return info
