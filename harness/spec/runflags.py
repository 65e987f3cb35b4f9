"""The flags of `tlsharness run` (also used by repro, demo and scenario files)."""
from __future__ import annotations

import argparse

from harness.spec.config import RunConfig
from harness.spec.params import PARAMS


class FlagError(ValueError):
    pass


class RaisingParser(argparse.ArgumentParser):
    """For parsing scenario parameters: errors raise instead of exiting."""

    def error(self, message):
        raise FlagError(message)


def add_run_flags(p: argparse.ArgumentParser) -> None:
    """One flag per declared parameter (harness/spec/params.py), then the
    controller's own output switches."""
    for prm in PARAMS:
        if prm.flag is None:
            continue
        if prm.type is bool:
            p.add_argument(prm.option, dest=prm.dest, action="store_true", help=prm.help)
            continue
        text = prm.parse is not None or prm.type is str
        p.add_argument(prm.option, dest=prm.dest, default=prm.default, metavar=prm.metavar,
                       type=str if text else prm.type, help=prm.help)
    a = p.add_argument
    a("--lib-prefix", help="your own build's install prefix (compiled against the adapter on first use)")
    a("--lib-kind", default="openssl", help="adapter for --lib-prefix: openssl (LibreSSL, BoringSSL), "
      "wolfssl, mbedtls, gnutls")
    a("--quiet", "-q", action="store_true", help="no live progress")
    a("--json", action="store_true", help="print the outcome as JSON")
    a("--bisect", action="store_true", help="exit 0 good / 1 bad / 125 cannot tell (git bisect run)")


def config_from_args(ns) -> RunConfig:
    """The validated RunConfig of parsed flags (ConfigError with one line)."""
    values = {}
    for prm in PARAMS:
        if prm.flag is None:
            continue
        v = getattr(ns, prm.dest)
        if prm.negate:
            v = not v
        elif prm.parse is not None:
            v = prm.parse(v)
        values[prm.name] = v
    return RunConfig(**values).validate()


def parser() -> RaisingParser:
    """The run flags alone, raising FlagError instead of exiting."""
    p = RaisingParser(add_help=False)
    add_run_flags(p)
    return p


def dests() -> set[str]:
    return {a.dest for a in parser()._actions}


def tokens(params: dict) -> list[str]:
    """A scenario's params as command-line tokens."""
    out = []
    for k, v in params.items():
        flag = "--" + k.replace("_", "-")
        if v is True:
            out.append(flag)
        elif v is False or v is None:
            continue
        elif isinstance(v, (list, tuple)):
            out += [flag, ",".join(str(x) for x in v)]
        else:
            out += [flag, str(v)]
    return out
