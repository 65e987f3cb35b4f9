"""The docs stay true to the tool: every `--flag` that README.md and docs/*.md name
exists in the command line's parsers, and every relative link points at a file
(and heading) that exists.

What is checked as a tlsharness flag:
- in a fenced code block or an inline code span, a command `tlsharness SUB [VERB]
  ... --flag` (its continuation lines too): the flag must be one of that
  subcommand's options (of its nested verb's, where the subcommand has verbs);
- an inline code span that begins with a flag (`--stall-s`, `[--lib NAME]`): the
  flag must be an option of some subcommand, unless it is in OTHER_TOOLS below.
Spans and lines that start with another program (`make`, `git bisect`, `dask`,
`bench/...py`) are that program's business and not read.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from harness.cli import parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))

# Flags the docs name that belong to other tools, each with where it comes from.
OTHER_TOOLS = {
    "--tls-repeat": "pytest option of the tlsharness plugin (harness/pytest_plugin.py)",
    "--tls-seed": "pytest option of the tlsharness plugin",
    "--tls-results": "pytest option of the tlsharness plugin",
    "--resources": "dask worker's option (worker_extra_args for dask-jobqueue)",
    "--host": "dask scheduler's and worker's option (bind address)",
    "--no-dashboard": "dask scheduler's and worker's option",
    "--fix": "the reference server's option (tests/refserver/, bench/foreign_verdicts.py)",
    "--only": "bench scripts' option (bench/foreign_verdicts.py, reports.py...)",
    "--enable-all": "wolfSSL's ./configure option (OpenSIPS's tls_wolfssl Makefile)",
    "--enable-opensslextra": "wolfSSL's ./configure option (a recipe in variants.toml)",
    "--enable-tls13": "wolfSSL's ./configure option",
    "--enable-writedup": "wolfSSL's ./configure option",
    "--enable-distro": "wolfSSL's ./configure option (Debian's build)",
    "--enable-oldtls": "wolfSSL's ./configure option (Debian's build)",
    "--enable-pkcs11": "wolfSSL's ./configure option (Debian's build)",
}

FENCE = re.compile(r"^```.*?$(.*?)^```", re.S | re.M)
SPAN = re.compile(r"`([^`\n]+)`")
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _subparsers(p: argparse.ArgumentParser) -> dict:
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            return a.choices
    return {}


def _options(p: argparse.ArgumentParser) -> set:
    return {o for a in p._actions for o in a.option_strings if o.startswith("--")}


def _all_options(p: argparse.ArgumentParser) -> set:
    found = set(_options(p))
    for sp in _subparsers(p).values():
        found |= _all_options(sp)
    return found


def _commands(block: str):
    """`tlsharness ...` commands in a code block, continuation lines joined (a line
    ending in a backslash, or an indented line under a command)."""
    cmd = None
    for line in block.splitlines():
        stripped = line.strip()
        if cmd is not None and (cmd.endswith("\\") or (line[:1].isspace() and stripped)):
            cmd = cmd.rstrip("\\") + " " + stripped
            continue
        if cmd is not None:
            yield cmd
        cmd = stripped if stripped.startswith("tlsharness ") else None
    if cmd is not None:
        yield cmd


def _check_command(top, cmd: str, where: str) -> list:
    cmd = cmd.split(" -- ", 1)[0]            # target cmd ... -- SERVER COMMAND: not ours
    words = cmd.split()
    subs = _subparsers(top)
    if len(words) < 2 or words[1] not in subs:
        return [f"{where}: `{cmd}`: no subcommand {words[1:2]}"]
    p = subs[words[1]]
    if len(words) > 2 and words[2] in _subparsers(p):
        p = _subparsers(p)[words[2]]
    known = _options(p)
    return [f"{where}: `{cmd[:70]}`: {f} is no option of it"
            for f in FLAG.findall(cmd) if f not in known]


def _prose(text: str) -> str:
    return FENCE.sub("", text)


def _problems(page: Path) -> list:
    top = parser()
    every = _all_options(top)
    text = page.read_text()
    name = page.relative_to(ROOT)
    found = []
    for block in FENCE.findall(text):
        for cmd in _commands(block):
            found += _check_command(top, cmd, str(name))
    for span in SPAN.findall(_prose(text)):
        s = span.strip()
        if s.startswith("tlsharness "):
            found += _check_command(top, s, str(name))
        elif s.lstrip("[").startswith("--"):
            found += [f"{name}: `{s}`: {f} is no option of any subcommand"
                      for f in FLAG.findall(s) if f not in every and f not in OTHER_TOOLS]
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_flag_named_exists(page):
    problems = _problems(page)
    assert not problems, "\n".join(problems)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to -."""
    s = heading.strip().lower().replace("`", "")
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def _anchors(page: Path) -> set:
    return {_slug(m) for m in re.findall(r"^#+\s+(.*)$", _prose(page.read_text()), re.M)}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_exists(page):
    bad = []
    for target in LINK.findall(_prose(page.read_text())):
        if re.match(r"[a-z]+:", target):     # https:, mailto:: not a file of ours
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            bad.append(f"{target}: no such file")
        elif not dest.is_relative_to(ROOT):
            bad.append(f"{target}: outside the project")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            bad.append(f"{target}: no heading #{anchor} in {dest.name}")
    assert not bad, "\n".join(bad)


def test_readme_is_a_front_page():
    """The README stays short, keeps the two commands of a fresh machine, and
    links every topic page of docs/."""
    text = (ROOT / "README.md").read_text()
    assert "make demo" in text and "make test" in text
    assert len(text.splitlines()) <= 160
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in LINK.findall(_prose(text))}
    missing = [p.name for p in PAGES[1:] if p.resolve() not in linked]
    assert not missing, f"docs pages the README does not link: {missing}"


def test_the_checks_can_fail():
    """The checkers themselves: a made-up flag and a dead link are caught."""
    top = parser()
    assert _check_command(top, "tlsharness run --lib openssl --no-such-flag", "x")
    assert not _check_command(top, "tlsharness run --lib openssl --workers 4", "x")
    assert _check_command(top, "tlsharness nosuchcommand --lib x", "x")
    assert list(_commands("tlsharness run --a \\\n  --b\nmake x --c\n")) == [
        "tlsharness run --a  --b"]
    assert _slug("Kernel futex events (bpftrace)") == "kernel-futex-events-bpftrace"
