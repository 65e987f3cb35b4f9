"""The runner behind the pytest plugin: runs `tlsharness run` (a fresh
controller process per run, like a user), records verdict, families and
artifact path in the test report and the JUnit XML properties, and checks
flakiness-aware expectations."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from harness.analysis import results
from harness.builds import backends
from harness.verdicts import FAILURES, V


def describe(o: dict) -> str:
    fam = ", ".join(o.get("families") or []) or "-"
    return (f"{o['verdict']} ({o.get('reason', '')[:120]}); families: {fam}; "
            f"artifacts: {o.get('run_dir')}; re-run: {o.get('command', '')}")


class Runner:
    def __init__(self, request, tmp_path_factory):
        self.request = request
        self.item = request.node
        self.config = request.config
        self.tmpf = tmp_path_factory
        self.item._tlsh_runs = []

    def _repeat(self, n, what: str = "must_pass") -> int:
        """The number of runs: --tls-repeat, else N, which must be a whole
        number >= 1 (zero runs would pass having run nothing)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            pytest.fail(f"{what}: repeat must be a whole number of at least 1 (got {n!r})",
                        pytrace=False)
        forced = self.config.getoption("--tls-repeat")
        return forced if forced is not None else n

    def _check_lib(self, lib: str) -> None:
        only = self.config.getoption("--tls-lib")
        if only and lib not in only:
            pytest.skip(f"{lib} not selected (--tls-lib {' '.join(only)})")
        avail = backends.availability()
        if lib not in avail:                  # a typo must not turn into a green skip
            pytest.fail(f"unknown TLS library {lib!r} (known: {', '.join(avail)})", pytrace=False)
        built, why = avail[lib]
        if not built:
            pytest.skip(f"{lib} not built: {why}")

    def run(self, lib: str = "openssl", **params) -> dict:
        """One `tlsharness run`; params are its flags (mitigate="pshared", duration=5...)."""
        self._check_lib(lib)
        out_dir = self.config.getoption("--tls-results") or str(self.tmpf.mktemp("tlsh"))
        args = ["run", "--lib", lib, "--json", "-q", "--out", out_dir]
        seed = self.config.getoption("--tls-seed")
        if seed is not None and "seed" not in params:
            params["seed"] = seed
        for k, v in params.items():
            flag = "--" + k.replace("_", "-")
            if v is True:
                args.append(flag)
            elif v is not False and v is not None:
                args += [flag, str(v)]
        timeout = float(params.get("duration", 10)) + 120
        r = subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True,
                           timeout=timeout, cwd=str(results.ROOT))
        if r.returncode not in (0, 1, 3):
            pytest.fail(f"tlsharness run failed (exit {r.returncode}): {r.stderr.strip()[-400:]}",
                        pytrace=False)
        o = json.loads(r.stdout)
        self.item._tlsh_runs.append(o)
        n = len(self.item._tlsh_runs)
        self.item.user_properties += [(f"tls_run{n}_verdict", o["verdict"]),
                                      (f"tls_run{n}_families", ",".join(o.get("families") or [])),
                                      (f"tls_run{n}_artifacts", o.get("run_dir", ""))]
        return o

    def must_pass(self, repeat: int = 1, **params) -> list[dict]:
        """Fails on the first run that is not a pass, and shows it."""
        outs = []
        n = self._repeat(repeat)
        for i in range(n):
            o = self.run(**params)
            outs.append(o)
            if o["verdict"] != V.PASS:
                pytest.fail(f"expected pass, run {i + 1} of {n} gave "
                            + describe(o), pytrace=False)
        return outs

    def must_reproduce(self, min_rate: float = 1.0, repeat: int = 3, verdicts=None,
                       families=None, **params) -> float:
        """At least min_rate of `repeat` runs end in one of `verdicts` (default: any
        failure) with every family in `families` named."""
        want = set(verdicts or FAILURES)
        n = self._repeat(repeat, "must_reproduce")
        if not 0 <= min_rate <= 1:
            pytest.fail(f"must_reproduce: min_rate must be between 0 and 1 (got {min_rate})",
                        pytrace=False)
        outs = [self.run(**params) for _ in range(n)]
        hits = [o for o in outs if o["verdict"] in want
                and set(families or []) <= set(o.get("families") or [])]
        rate = len(hits) / n
        if rate < min_rate:
            pytest.fail(f"expected to reproduce in >= {min_rate:.0%} of {n} runs "
                        f"({', '.join(sorted(want))}"
                        + (f" with families {families}" if families else "")
                        + f"), got {len(hits)}/{n}:\n  " + "\n  ".join(describe(o) for o in outs),
                        pytrace=False)
        return rate
