"""The shape of native_shim: no #include cycle, no call cycle between the
stand's C files (read from their object code), adapters kept out of the
stand's headers, one optional table per adapter, cffi declarations read
from the headers, activity names defined once in C.  Fast: no stand runs."""
import json
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from support import ROOT
from native_shim import build, cdef

INCLUDE, SRC = build.INCLUDE, build.SRC
ADAPTER_BINDINGS = ("openssl", "wolfssl", "mbedtls", "gnutls")
STAND_FILES = build._binding("stand").SOURCES


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of the directed graph as a list of nodes (first repeated last), or None."""
    state, stack = {}, []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                c = visit(m)
                if c:
                    return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            c = visit(n)
            if c:
                return c
    return None


def test_find_cycle_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"a"}}) == ["a", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


# ---- (a) includes -----------------------------------------------------------

def quoted_includes(path: Path) -> list[Path]:
    """The project headers a file includes ("..."), resolved as the compiler
    does: the file's own directory first, then include/."""
    out = []
    for name in re.findall(r'^\s*#\s*include\s+"([^"]+)"', path.read_text(), re.M):
        for d in (path.parent, INCLUDE):
            if (d / name).exists():
                out.append((d / name).resolve())
                break
        else:
            raise AssertionError(f"{path.name} includes {name}, which is in neither "
                                 f"{path.parent.name}/ nor include/")
    return out


def headers() -> list[Path]:
    return sorted(INCLUDE.glob("*.h")) + sorted(SRC.glob("*.h"))


def test_no_include_cycle():
    graph = {str(h.resolve()): {str(i) for i in quoted_includes(h)} for h in headers()}
    cycle = find_cycle(graph)
    assert cycle is None, "include cycle: " + " -> ".join(Path(c).name for c in cycle)


def test_public_headers_do_not_include_private_ones():
    for h in sorted(INCLUDE.glob("*.h")):
        private = [i.name for i in quoted_includes(h) if i.parent == SRC.resolve()]
        assert not private, f"include/{h.name} includes src/ headers {private}"


def all_includes(path: Path) -> set[str]:
    seen, todo = set(), [path]
    while todo:
        for i in quoted_includes(todo.pop()):
            if i.name not in seen:
                seen.add(i.name)
                todo.append(i)
    return seen


# ---- (c) adapters and the stand's private state ----------------------------

def adapter_files() -> list[str]:
    return [s for b in ADAPTER_BINDINGS for s in build._binding(b).SOURCES]


def test_adapters_do_not_include_the_stand():
    assert {"tls_openssl.c", "tls_wolfssl.c", "tls_mbedtls.c", "tls_gnutls.c"} <= set(adapter_files())
    for f in adapter_files():
        inc = all_includes(SRC / f)
        assert "tlsh_stand.h" not in inc and "stand_internal.h" not in inc, \
            f"{f} reaches the stand's headers: {sorted(inc)}"
        if f.startswith("tls_"):
            assert "tlsh_lib.h" in inc, f"{f} is an adapter but does not include tlsh_lib.h"


def test_stand_state_is_private_to_the_stand():
    users = {c.name for c in SRC.glob("*.c") if "stand_internal.h" in all_includes(c)}
    assert users and users <= set(STAND_FILES), \
        f"src/stand_internal.h included outside the stand: {sorted(users - set(STAND_FILES))}"
    assert "struct tlsh_stand {" not in (INCLUDE / "tlsh_stand.h").read_text()
    assert "struct tlsh_conn" not in (INCLUDE / "tlsh_stand.h").read_text()


# ---- (b) calls between C files, from their object code ---------------------

def _compile(src: str, out_dir: Path, cflags: tuple[str, ...]) -> Path:
    obj = out_dir / (Path(src).stem + ".o")
    r = subprocess.run(["cc", *build.CFLAGS, *cflags, "-fPIC", f"-I{INCLUDE}", "-c",
                        str(SRC / src), "-o", str(obj)], capture_output=True, text=True)
    assert r.returncode == 0, f"{src}: {r.stderr}"
    return obj


def _symbols(obj: Path) -> tuple[set[str], set[str]]:
    """(defined, undefined) external symbols of an object file."""
    r = subprocess.run(["nm", "-gP", str(obj)], capture_output=True, text=True, check=True)
    defined, undefined = set(), set()
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            (undefined if parts[1] in ("U", "w", "v") else defined).add(parts[0])
    return defined, undefined


@pytest.fixture(scope="module")
def call_graph(tmp_path_factory):
    """file -> {files whose symbols it uses}, for what every TLS extension
    compiles (core, stand, the adapter contract) plus the OpenSSL adapter
    when its headers are found."""
    if not (shutil.which("cc") and shutil.which("nm")):
        pytest.skip("no C compiler or nm")
    jobs = {s: () for b in ("core", "stand", "tls") for s in build._binding(b).SOURCES}
    ext = next(e for e in build.EXTENSIONS if e.name == "_tlsh_openssl")
    found, _, flags = ext.find()
    if found:
        jobs.update({s: tuple(flags["cflags"]) for s in build._binding("openssl").SOURCES})
    out = tmp_path_factory.mktemp("objs")
    with ThreadPoolExecutor(2) as pool:
        objs = dict(zip(jobs, pool.map(lambda s: _compile(s, out, jobs[s]), jobs)))
    syms = {s: _symbols(o) for s, o in objs.items()}
    owner = {name: s for s, (defined, _) in syms.items() for name in defined}
    graph = {s: {owner[u] for u in undef if u in owner and owner[u] != s}
             for s, (_, undef) in syms.items()}
    why = {(s, owner[u]): u for s, (_, undef) in syms.items() for u in undef if u in owner}
    return graph, why


def test_no_call_cycle_between_c_files(call_graph):
    graph, why = call_graph
    cycle = find_cycle(graph)
    assert cycle is None, "call cycle: " + " -> ".join(
        f"{a} ({why[(a, b)]})" for a, b in zip(cycle, cycle[1:])) + f" -> {cycle[-1]}"


def test_call_graph_is_the_real_one(call_graph):
    """The graph is read, not empty: the calls the stand is built on are in it."""
    graph, _ = call_graph
    for a, b in (("stand.c", "listener.c"), ("stand.c", "worker.c"), ("stand.c", "status.c"),
                 ("listener.c", "chan.c"), ("worker.c", "chan.c"), ("stand.c", "crash.c")):
        assert b in graph[a], f"{a} does not call into {b}: {sorted(graph[a])}"
    for loop in ("listener.c", "worker.c", "chan.c"):
        assert "stand.c" not in graph[loop], f"{loop} calls back into stand.c"


# ---- (d) the optional table of every built backend -------------------------

OPTIONAL_PY = r"""
import json, sys
from harness.builds import backends
be = backends.get(sys.argv[1])
out = {"optional": be.optional(), "caps": be.caps(), "version": be.version(),
       "unsupported": {}}
be.init()
out["rand_before"] = [be.rand_calls(), be.rand_reentries()]
for name, call in (("atfork_stop", be.atfork_stop), ("rand_wrap", lambda: be.rand_wrap(True)),
                   ("parent_use", be.parent_use)):
    try:
        call()
        out["unsupported"][name] = None
    except backends.Unsupported as e:
        out["unsupported"][name] = str(e)
out["rand"] = [be.rand_calls(), be.rand_reentries()]
print(json.dumps(out))
"""

# What each library has beyond the contract (True) or lacks (False).  Every
# adapter uses its library in the parent (random bytes); only OpenSSL has
# per-thread state to stop at fork and a replaceable RAND method.
HAS = {
    "openssl": {"parent_use": True, "atfork_stop": True, "rand_wrap": True, "rand_calls": True,
                "rand_reentries": True, "set_lock_counting": False},
    "wolfssl": {"parent_use": True, "atfork_stop": False, "rand_wrap": False, "rand_calls": False,
                "rand_reentries": False, "set_lock_counting": False},
    "mbedtls": {"parent_use": True, "atfork_stop": False, "rand_wrap": False, "rand_calls": False,
                "rand_reentries": False},
    "gnutls": {"parent_use": True, "atfork_stop": False, "rand_wrap": False, "rand_calls": False,
               "rand_reentries": False, "set_lock_counting": True},
}


def _backends():
    from harness.builds import backends
    return [pytest.param(n, marks=pytest.mark.skipif(not ok, reason=f"{n} not built: {why}"))
            for n, (ok, why) in backends.availability().items()]


@pytest.mark.parametrize("name", _backends())
def test_optional_table(name):
    from harness.builds import backends
    kind = backends.info(name).get("kind") or name.split("@")[0]
    r = subprocess.run([sys.executable, "-c", OPTIONAL_PY, name], capture_output=True, text=True,
                       timeout=60, cwd=str(ROOT))
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    opt, caps = got["optional"], got["caps"]
    has_all = dict(HAS[kind], warm_methods=kind == "openssl")
    if kind == "openssl":       # a fork lacks what its caps flags say it lacks (BoringSSL)
        has_all.update(atfork_stop="no OPENSSL_thread_stop" not in caps["flags"])
        wrap = "no RAND_METHOD wrapper" not in caps["flags"]
        has_all.update(rand_wrap=wrap, rand_calls=wrap, rand_reentries=wrap)
        v = got["version"]
        if v.startswith("OpenSSL ") and "BoringSSL" not in v:   # OpenSSL itself, not a fork
            # what its headers keep, read in its sources, not taken from the
            # adapter's flags: 4.0 removed ENGINE and the custom EVP method
            # families but still declares RAND_set_rand_method (deprecated
            # since 3.0) and OPENSSL_thread_stop, as 1.1.1 to 3.6 do
            assert wrap and has_all["atfork_stop"], \
                f"{name} ({got['version']}): a feature test missed what OpenSSL has: {caps['flags']}"
    for member, has in has_all.items():
        assert opt[member] == has, f"{name}: optional.{member} is {'set' if opt[member] else 'NULL'}"
    # NULL exactly where the library lacks the feature, by what else it says of itself
    assert opt["hook"] == caps["alloc_hook"], f"{name}: hook entry vs caps.alloc_hook"
    assert opt["set_lock_counting"] == opt["lock_calls"] == (opt["lock_counting_by"] is not None)
    if kind == "mbedtls":
        assert opt["set_lock_counting"] == ("MBEDTLS_THREADING_C=1" in caps["flags"])
    # a NULL entry is an Unsupported with the reason, a present one runs
    for member, msg in got["unsupported"].items():
        if opt[member]:
            assert msg is None, f"{name}: {member} present but refused: {msg}"
        else:
            assert msg and msg.startswith(f"{name}: ") and backends.Backend.UNSUPPORTED[member] in msg
    # the counters start at 0 in every adapter (0 for good where no RAND wrapper)
    assert got["rand_before"] == [0, 0]
    if opt["rand_wrap"]:
        assert got["rand"][0] > 0, "parent_use drew random bytes through the wrapped method"
    else:
        assert got["rand"] == [0, 0]


# ---- (5) cffi declarations come from the headers ---------------------------

def test_no_declarations_in_bindings():
    for b in ("core", "loadgen", "stand", "tls", *ADAPTER_BINDINGS):
        m = build._binding(b)
        assert not hasattr(m, "TYPES") and not hasattr(m, "FUNCTIONS"), f"bindings/{b}.py declares C"
        for h in m.HEADERS:
            assert cdef.regions(INCLUDE / h).strip(), f"{h}: empty cffi region"


def test_a_new_stand_cfg_field_reaches_python(tmp_path):
    if not shutil.which("cc"):
        pytest.skip("no C compiler (the cffi regions are preprocessed)")
    import cffi
    inc = tmp_path / "include"
    shutil.copytree(INCLUDE, inc)
    h = inc / "tlsh_stand.h"
    text = h.read_text()
    assert "    int reply_other;" in text
    h.write_text(text.replace("    int reply_other;", "    int reply_other;\n    int zz_new_knob;", 1))
    stand = next(e for e in build.EXTENSIONS if e.name == "_tlsh_openssl")
    ffi = cffi.FFI()
    ffi.cdef(cdef.cdef_for(build.headers_of(stand), include=inc))
    fields = [f for f, _ in ffi.typeof("struct tlsh_stand_cfg").fields]
    assert fields[fields.index("reply_other") + 1] == "zz_new_knob"
    assert ffi.sizeof("struct tlsh_stand_cfg") > 0


def test_cdef_extraction_details():
    text = cdef.strip_comments('#define A 0x10ULL /* c */\n#define B (1 << 4)\n#define C "x/*y*/"\n'
                               '#define F(x) x\n#define D A\n')
    assert cdef.numeric_defines(text) == ["A", "B"]
    assert cdef.inline_to_prototypes("static inline int f(int a)\n{ if (a) { return 1; } return 0; }\nint g;") \
        == "int f(int a);\nint g;"
    with pytest.raises(cdef.CdefError):
        cdef.regions(INCLUDE.parent / "src" / "chan.h")    # private: no region


# ---- (3) activity names, once, in C ----------------------------------------

def test_activities_come_from_the_core(core):
    from harness import segments
    from harness.control import progress
    ffi, lib = core
    listed = re.findall(r'X\((\w+), "(\w+)"\)', (INCLUDE / "tlsh_status.h").read_text())
    assert [n for _, n in listed] == segments.activities()
    for i, (ident, _) in enumerate(listed):
        assert getattr(lib, f"TLSH_ACT_{ident}") == i
    assert lib.tlsh_activity_name(len(listed)) == ffi.NULL
    assert lib.tlsh_activity_name(-1) == ffi.NULL
    ab = progress.abbreviations()
    assert set(ab) == set(listed_names := [n for _, n in listed])
    assert len(set(ab.values())) == len(listed_names), "two activities share a letter"


def test_exit_codes_agree_with_python():
    """The exit codes C gives its processes (src/exits.h) are the ones
    harness.vocab.ProcExit names, and no C file writes one as a bare number."""
    from harness.vocab import ProcExit
    defined = {m.group(1): int(m.group(2)) for m in
               re.finditer(r"#define TLSH_EXIT_(\w+)\s+(\d+)", (SRC / "exits.h").read_text())}
    assert defined and all(ProcExit[name] == code for name, code in defined.items()), defined
    bare = [f"{f.name}: {m.group(0)}" for f in sorted(SRC.glob("*.c"))
            for m in re.finditer(r"\b_?exit\((\d+)\)", f.read_text())
            if int(m.group(1)) in set(defined.values())]
    assert not bare, f"exit codes written as numbers (use exits.h): {bare}"


def test_one_cpu_relax():
    hits = [f.name for f in sorted(SRC.glob("*.[ch]")) if "void cpu_relax(" in f.read_text()]
    assert hits == ["relax.h"], hits
