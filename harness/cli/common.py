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
