"""What every command shares: the argument parser that errs in one line."""
from __future__ import annotations

import argparse

from harness.verdicts import EXIT_USAGE


class ArgParser(argparse.ArgumentParser):
    def error(self, message):           # one line, exit 2 (argparse prints usage too)
        self.exit(EXIT_USAGE, f"tlsharness: error: {message}\n")


def int_in(lo: int, hi: int):
    """An argparse type: an integer in [lo, hi], the range said in the error."""
    def parse(text: str) -> int:
        v = int(text)                   # ValueError: argparse says "invalid int value"
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"must be between {lo} and {hi} (got {v})")
        return v
    parse.__name__ = "int"
    return parse


def writable_file(text: str) -> str:
    """An argparse type: a file we will be able to write, checked before any
    work is done (a report written at the end must not be lost to a typo)."""
    import os
    from pathlib import Path
    p = Path(text)
    try:
        parent = p.absolute().parent
        if not text or p.is_dir():
            raise argparse.ArgumentTypeError(f"{text!r} is a folder, not a file" if text
                                             else "must name a file")
        if not parent.is_dir():
            raise argparse.ArgumentTypeError(f"{text}: no folder {parent}")
        if p.exists():                   # opened for appending: never truncated here
            open(p, "a").close()
        else:                            # made and removed: root's os.access says yes to /proc
            open(p, "x").close()
            p.unlink()
    except OSError as e:
        raise argparse.ArgumentTypeError(f"{text[:80]}: cannot write there "
                                         f"({e.strerror or e})") from None
    return text
