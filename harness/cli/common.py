"""What every command shares: the argument parser that errs in one line."""
from __future__ import annotations

import argparse

from harness.verdicts import EXIT_USAGE


class ArgParser(argparse.ArgumentParser):
    def error(self, message):           # one line, exit 2 (argparse prints usage too)
        self.exit(EXIT_USAGE, f"tlsharness: error: {message}\n")
