"""The shape of the Python code: packages in layers with no import cycle,
small modules and functions, no private name taken from another module,
verdicts named only through harness.verdicts, the stand's exit codes and
the mitigation names only through harness.vocab, and nothing that points
outside the project.  Every Python folder of the tool is read: harness/,
native_shim/ and bench/."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from harness.vocab import M, ProcExit

ROOT = Path(__file__).resolve().parent.parent
HARNESS = ROOT / "harness"
# the folders of the tool's Python code (scenarios/ and tests/ are its data and checks)
CODE = ("harness", "native_shim", "bench")
# modules over the size limits, each with why it is allowed for now: printed by
# the size test, so that an allowance is seen; empty is the aim
SIZE_ALLOWANCE: dict[str, str] = {}

# Lower layers first: a package may import itself and the ones before it.
LAYERS = ["harness", "verdicts", "vocab", "spec", "builds", "segments", "watchdog", "stand", "loadgen",
          "analysis", "control", "cli", "pytest_plugin", "__main__"]
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
VERDICT_NAMES = {"pass", "degraded", "deadlock", "livelock", "mixed", "crash", "corruption",
                 "leak", "overload", "stopped", "inconclusive", "unsupported", "interrupted",
                 "error"}


def _modules(folders=CODE) -> dict[str, Path]:
    out = {}
    for folder in folders:
        for f in (ROOT / folder).rglob("*.py"):
            parts = f.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = f
    return out


def _ours(module: str) -> bool:
    return module.split(".")[0] in CODE


def _imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Every project module each module imports, at module level or inside a
    function (a lazy import is still a dependency)."""
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, f in mods.items():
        for n in ast.walk(ast.parse(f.read_text())):
            if isinstance(n, ast.ImportFrom) and n.module and _ours(n.module):
                for a in n.names:
                    sub = f"{n.module}.{a.name}"
                    graph[m].add(sub if sub in mods else n.module)
            elif isinstance(n, ast.Import):
                graph[m] |= {a.name for a in n.names if _ours(a.name) and "." in a.name}
    return graph


def _private_imports(tree: ast.AST) -> list[str]:
    """Private names (a leading underscore) taken from another project module:
    `from native_shim.debsrc import _tail` (a dunder such as __version__ is
    public).  A name that others need is public."""
    return [f"{n.lineno}: from {n.module} import {a.name}" for n in ast.walk(tree)
            if isinstance(n, ast.ImportFrom) and n.module and _ours(n.module)
            for a in n.names if a.name.startswith("_") and not a.name.endswith("__")]


def test_the_checker_finds_private_imports():
    sample = ("from native_shim.debsrc import _tail\nfrom harness.cli.runs import x as _x\n"
              "from harness import __version__\ndef f():\n    from bench.reports import ok, _row\n")
    assert _private_imports(ast.parse(sample)) == [
        "1: from native_shim.debsrc import _tail", "5: from bench.reports import _row"]


def test_no_module_imports_a_private_name():
    found = [f"{m}:{hit}" for m, f in sorted(_modules().items())
             for hit in _private_imports(ast.parse(f.read_text()))]
    assert not found, "private names imported across modules (make them public): " + "; ".join(found)


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "harness"


def test_no_import_cycle_between_modules():
    graph = _imports(_modules())
    state: dict[str, int] = {}
    cycles = []

    def visit(u, path):
        state[u] = 1
        for v in sorted(graph.get(u, ())):
            if state.get(v) == 1:
                cycles.append(path[path.index(v):] + [v])
            elif v in graph and not state.get(v):
                visit(v, path + [v])
        state[u] = 2
    for m in sorted(graph):
        if not state.get(m):
            visit(m, [m])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_packages_import_only_lower_layers():
    upward = []
    for m, targets in _imports(_modules(["harness"])).items():
        for t in targets:
            if not t.startswith("harness"):
                continue
            a, b = _layer(m), _layer(t)
            if a != b and LAYERS.index(b) > LAYERS.index(a):
                upward.append(f"{m} imports {t}")
    assert not upward, "imports against the layers: " + "; ".join(sorted(upward))


def test_modules_and_functions_are_small():
    big = []
    for m, why in SIZE_ALLOWANCE.items():
        print(f"size allowance: {m}: {why}")
    for m, f in sorted(_modules().items()):
        text = f.read_text()
        if len(text.splitlines()) > MAX_MODULE_LINES and m not in SIZE_ALLOWANCE:
            big.append(f"{m}: {len(text.splitlines())} lines")
        for n in ast.walk(ast.parse(text)):
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
                size = n.end_lineno - n.lineno + 1
                if size > MAX_FUNCTION_LINES:
                    big.append(f"{m}.{n.name}: {size} lines")
    assert not big, "over the size limits: " + "; ".join(big)


def _verdict_literals(tree: ast.AST) -> list[int]:
    """Lines where a verdict is written as a string literal in a verdict's
    place: compared with something called verdict, given to Verdict(...), stored
    under "verdict"/"outcome", or listed in verdicts=[...]."""

    def lits(node):
        if isinstance(node, ast.Constant) and node.value in VERDICT_NAMES:
            return [node]
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return [e for e in node.elts if isinstance(e, ast.Constant)
                    and e.value in VERDICT_NAMES]
        return []

    def mentions_verdict(node):
        return "verdict" in ast.unparse(node).lower()

    hits = []
    for n in ast.walk(tree):
        if isinstance(n, ast.Compare):
            sides = [n.left, *n.comparators]
            if any(mentions_verdict(x) for x in sides):
                hits += [c.lineno for x in sides for c in lits(x)]
        elif isinstance(n, ast.Call):
            fn = ast.unparse(n.func)
            if fn.endswith("Verdict") and n.args:
                hits += [c.lineno for c in lits(n.args[0])]
            for kw in n.keywords:
                if kw.arg in ("verdict", "verdicts"):
                    hits += [c.lineno for c in lits(kw.value)]
        elif isinstance(n, ast.Dict):
            for k, v in zip(n.keys, n.values):
                if isinstance(k, ast.Constant) and k.value in ("verdict", "outcome"):
                    hits += [c.lineno for c in lits(v)]
        elif isinstance(n, ast.Assign) and any(mentions_verdict(t) for t in n.targets):
            hits += [c.lineno for c in lits(n.value)]
    return sorted(set(hits))


def test_the_checker_finds_verdict_literals():
    sample = ('if o["verdict"] == "pass": pass\nv = Verdict("mixed")\n'
              'out = {"verdict": "error"}\nfails(verdicts=["crash"])\nx.verdict = "leak"\n'
              'ok = {"error": 1}["error"]\n')
    assert _verdict_literals(ast.parse(sample)) == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("folder", ["harness", "scenarios", "bench", "native_shim"])
def test_verdicts_are_named_through_the_vocabulary(folder):
    found = []
    for f in sorted((ROOT / folder).rglob("*.py")):
        if f == HARNESS / "verdicts.py" or f == Path(__file__):
            continue
        found += [f"{f.relative_to(ROOT)}:{line}" for line in _verdict_literals(ast.parse(f.read_text()))]
    assert not found, "verdict literals (use harness.verdicts.V): " + ", ".join(found)


def _stand_exit_literals(tree: ast.AST) -> list[int]:
    """Lines where an exit status crosses processes as a bare number: any
    non-zero number given to os._exit, or one of the stand's own codes
    (ProcExit above 1: 70, 79, ...) compared with a returncode or exit_code."""
    codes = {int(c) for c in ProcExit if c > ProcExit.FAILED}

    def ints(node):
        return [c for c in ast.walk(node) if isinstance(c, ast.Constant)
                and type(c.value) is int]

    hits = []
    for n in ast.walk(tree):
        if isinstance(n, ast.Call) and ast.unparse(n.func) in ("os._exit", "_exit"):
            hits += [c.lineno for a in n.args for c in ints(a) if c.value != 0]
        elif isinstance(n, ast.Compare):
            sides = [n.left, *n.comparators]
            if any(re.search(r"returncode|exit_?code|exitstatus", ast.unparse(x), re.I)
                   for x in sides):
                hits += [c.lineno for x in sides for c in ints(x) if c.value in codes]
    return sorted(set(hits))


def test_the_checker_finds_stand_exit_literals():
    sample = ("os._exit(70)\nif p.returncode == 79: pass\nos._exit(0 if ok else 1)\n"
              "os._exit(0)\nif r.returncode != 0: pass\nx = 79\n"
              "if w['exit_code'] in (0, 78): pass\nos._exit(ProcExit.ORPHANED)\n")
    assert _stand_exit_literals(ast.parse(sample)) == [1, 2, 3, 7]


def _mitigation_literals(tree: ast.AST) -> list[int]:
    """Lines where a mitigation's name is written as a string of its own
    ("pshared"), not through harness.vocab.M.  A string that only contains one
    ("openssl+pshared", "--mitigate pshared: ...") is text, not a name."""
    names = {m.value for m in M}
    return sorted({n.lineno for n in ast.walk(tree)
                   if isinstance(n, ast.Constant) and n.value in names})


def test_the_checker_finds_mitigation_literals():
    sample = ('if "pshared" in cfg.mitigations: pass\nS = ("x", "write-dup")\n'
              'e = {"openssl+pshared": 1}\nm = M.PSHARED\nraise E("--mitigate pshared: no")\n')
    assert _mitigation_literals(ast.parse(sample)) == [1, 2]


def test_every_mitigation_is_named_and_described():
    from harness.spec.params import MITIGATIONS
    assert set(MITIGATIONS) == set(M), "harness.vocab.M and params.MITIGATIONS disagree"


@pytest.mark.parametrize("check", [_stand_exit_literals, _mitigation_literals],
                         ids=["stand-exit-codes", "mitigation-names"])
def test_crossing_values_are_named_through_the_vocabulary(check):
    """Not scenarios/: a scenario writes mitigation names as a user does (the
    keys of `expect`, mitigate="pshared")."""
    found = [f"{f.relative_to(ROOT)}:{line}" for m, f in sorted(_modules().items())
             if f != HARNESS / "vocab.py" for line in check(ast.parse(f.read_text()))]
    assert not found, "bare values that cross processes (use harness.vocab): " + ", ".join(found)


def test_nothing_points_outside_the_project():
    # the pattern is assembled so that this file itself holds no such path
    outside = ".." + "/" + "shared"
    pattern = re.compile(re.escape(outside) + "|" + re.escape("shared" + "/reference"))
    files = [*HARNESS.rglob("*.py"), *(ROOT / "tests").rglob("*.py"), *(ROOT / "docs").rglob("*.md"),
             ROOT / "README.md", *(ROOT / "native_shim").rglob("*.[ch]"), *(ROOT / "bench").rglob("*.py")]
    bad = [str(f.relative_to(ROOT)) for f in files if f != Path(__file__)
           and pattern.search(f.read_text(errors="replace"))]
    assert not bad, f"links out of the project: {bad}"


def test_bench_scripts_start_modules_that_run():
    """A bench script starts `python -m X`: X must be runnable (a module, or a
    package with __main__), or the script prints nothing for every row."""
    import importlib.util
    import re as _re
    for f in sorted((ROOT / "bench").glob("*.py")):
        for mod in _re.findall(r'"-m",\s*"([\w.]+)"', f.read_text()):
            spec = importlib.util.find_spec(mod)
            assert spec is not None, f"{f.name}: no module {mod}"
            if spec.submodule_search_locations:          # a package: needs __main__
                assert importlib.util.find_spec(mod + ".__main__"), \
                    f"{f.name}: python -m {mod} cannot run (a package without __main__)"
