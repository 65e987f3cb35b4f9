"""The shape of the Python code: packages in layers with no import cycle,
small modules and functions, verdicts named only through harness.verdicts,
and nothing that points outside the project."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HARNESS = ROOT / "harness"

# Lower layers first: a package may import itself and the ones before it.
LAYERS = ["harness", "verdicts", "spec", "builds", "segments", "watchdog", "stand", "loadgen",
          "analysis", "control", "cli", "pytest_plugin", "__main__"]
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
VERDICT_NAMES = {"pass", "degraded", "deadlock", "livelock", "mixed", "crash", "corruption",
                 "leak", "overload", "stopped", "inconclusive", "unsupported", "interrupted",
                 "error"}


def _modules() -> dict[str, Path]:
    out = {}
    for f in HARNESS.rglob("*.py"):
        parts = f.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = f
    return out


def _imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Every harness module each module imports, at module level or inside a
    function (a lazy import is still a dependency)."""
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, f in mods.items():
        for n in ast.walk(ast.parse(f.read_text())):
            if isinstance(n, ast.ImportFrom) and n.module and n.module.startswith("harness"):
                for a in n.names:
                    sub = f"{n.module}.{a.name}"
                    graph[m].add(sub if sub in mods else n.module)
            elif isinstance(n, ast.Import):
                graph[m] |= {a.name for a in n.names if a.name.startswith("harness.")}
    return graph


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
    for m, targets in _imports(_modules()).items():
        for t in targets:
            a, b = _layer(m), _layer(t)
            if a != b and LAYERS.index(b) > LAYERS.index(a):
                upward.append(f"{m} imports {t}")
    assert not upward, "imports against the layers: " + "; ".join(sorted(upward))


def test_modules_and_functions_are_small():
    big = []
    for m, f in sorted(_modules().items()):
        text = f.read_text()
        if len(text.splitlines()) > MAX_MODULE_LINES:
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


@pytest.mark.parametrize("folder", ["harness", "scenarios", "bench"])
def test_verdicts_are_named_through_the_vocabulary(folder):
    found = []
    for f in sorted((ROOT / folder).rglob("*.py")):
        if f == HARNESS / "verdicts.py" or f == Path(__file__):
            continue
        found += [f"{f.relative_to(ROOT)}:{line}" for line in _verdict_literals(ast.parse(f.read_text()))]
    assert not found, "verdict literals (use harness.verdicts.V): " + ", ".join(found)


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
