"""pytest plugin (entry point pytest11 = tlsharness): regression tests that
run the stand.  Costs nothing until used: the runner is imported on first
use of the `tlsharness` fixture.

    def test_fix_holds(tlsharness):
        tlsharness.must_pass(lib="openssl", memory="shared", handoff="per-message",
                             mitigate="pshared,prefork-thread", duration=10, repeat=3)

    def test_bug_still_reproduces(tlsharness):
        tlsharness.must_reproduce(lib="openssl", memory="shared", handoff="per-message",
                                  min_rate=0.8, repeat=5, families=["lost wake-up"])

Options: --tls-lib NAME (repeatable: only these libraries), --tls-repeat N
(override every repeat count), --tls-seed N, --tls-results DIR.
"""
import pytest


def _at_least_one(text: str) -> int:
    """--tls-repeat N: a whole number >= 1 (0 would run nothing and pass)."""
    import argparse
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1 (got {text!r})") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1 (got {n})")
    return n


def pytest_addoption(parser):
    g = parser.getgroup("tlsharness", "tlsharness regression runs")
    g.addoption("--tls-lib", action="append", default=[], metavar="NAME",
                help="run only expectations for these TLS libraries (repeatable)")
    g.addoption("--tls-repeat", type=_at_least_one, default=None, metavar="N",
                help="override the repeat count of every expectation")
    g.addoption("--tls-seed", type=int, default=None, metavar="N", help="seed every run")
    g.addoption("--tls-results", default=None, metavar="DIR",
                help="keep run folders here (default: pytest's temporary directory)")


def pytest_configure(config):
    config.addinivalue_line("markers", "tlsharness: runs the tlsharness stand (seconds to minutes)")


@pytest.fixture
def tlsharness(request, tmp_path_factory):
    from harness.control.regress import Runner
    return Runner(request, tmp_path_factory)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    runs = getattr(item, "_tlsh_runs", None)
    if runs and rep.when == "call":
        from harness.control.regress import describe
        rep.sections.append(("tlsharness runs", "\n".join(describe(o) for o in runs)))
