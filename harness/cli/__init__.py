"""The tlsharness command line (the controller process: it never loads a
TLS library).  One module per family of commands:

- runs.py       run, repro
- matrix.py     compare, mitigations, demo, report
- servers.py    target, watch (servers tlsharness did not build)
- serverbuilds.py  servers [list | build opensips] (real servers built here)
- catalogue.py  scenarios, libs, probe
- campaigns.py  campaign plan | run | merge (here, sharded, or on Dask workers)
- records.py    history (the run history in results/history.sqlite)
- reduce.py     shrink, bundle (from a failing run to a bug report)

Exit codes of `run`: 0 clean, 1 failure found, 2 usage error,
3 inconclusive (includes overload, stopped, unsupported), 4 harness error,
130 interrupted.  With --bisect (and for `repro`), git-bisect-run codes:
0 good, 1 bad, 125 cannot tell (skip this commit).
"""
from __future__ import annotations

import os
import sys

from harness import __version__
from harness.cli import (campaigns, catalogue, check, matrix, records, reduce, runs,
                         serverbuilds, servers)
from harness.cli.common import ArgParser
from harness.verdicts import EXIT_HARNESS, EXIT_USAGE, bisect_code


def parser() -> ArgParser:
    """The whole command line's parser, built without parsing anything (main() and
    tests/test_docs.py, which checks every flag the docs name)."""
    p = ArgParser(prog="tlsharness", description="Stress and deadlock reproduction harness "
                  "for TLS libraries inside multi-process servers.")
    p.add_argument("--version", action="version", version=f"tlsharness {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=ArgParser)
    for module in (runs, matrix, campaigns, servers, serverbuilds, catalogue, records, reduce,
                   check):
        module.add_parsers(sub)
    return p


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    for stream in (sys.stdout, sys.stderr):     # an ASCII-only terminal: '?' for '—', no crash
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")
    p = parser()
    server_cmd = []
    if argv and argv[0] == "target" and "--" in argv:     # target cmd [flags] -- COMMAND...
        i = argv.index("--")
        argv, server_cmd = argv[:i], argv[i + 1:]
    ns = p.parse_args(argv)
    if server_cmd:
        ns.command = server_cmd
    from harness.builds import native
    from harness.analysis import results
    from harness.spec import certs
    try:
        return ns.fn(ns, argv)
    except results.ResultsError as e:
        print(f"tlsharness: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except (certs.CertError, native.NativeMissing) as e:
        print(f"tlsharness: error: {e}", file=sys.stderr)
        return bisect_code(EXIT_HARNESS) if getattr(ns, "bisect", False) else EXIT_HARNESS
    except BrokenPipeError:             # output piped into head & co: not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
