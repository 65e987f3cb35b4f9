"""The run parameters are declared once (harness/spec/params.py): the flags,
the RunConfig fields and the C struct fields handed to the stand and the load
generators all come from that table, and must agree with the C side."""
from __future__ import annotations

import pytest

from harness.builds import native
from harness.spec import params, runflags
from harness.spec.config import RunConfig
from harness.spec.params import PARAMS, c_fields

RUNTIME = {"stand": {"port", "crash_dir"},                       # set by the stand itself
           "loadgen": {"host", "port", "nconns", "conn_base", "client_index"}}  # per process
STRUCT = {"stand": ("_tlsh_openssl", "struct tlsh_stand_cfg"),   # the stand is in each adapter
          "loadgen": ("_tlsh_loadgen", "struct tlsh_lg_config")}


def _struct_fields(proc: str) -> set[str]:
    ext, struct = STRUCT[proc]
    ffi, _ = native.load(ext)
    return {name for name, _ in ffi.typeof(struct).fields}


@pytest.mark.parametrize("proc", ["stand", "loadgen"])
def test_every_c_field_is_filled_once_and_exists(proc):
    try:
        fields = _struct_fields(proc)
    except native.NativeMissing as e:
        pytest.skip(str(e))
    declared = [f.name for p in PARAMS for f in p.c if f.proc == proc]
    assert len(declared) == len(set(declared)), "a C field filled by two parameters"
    assert set(declared) <= fields, f"declared but not in the struct: {set(declared) - fields}"
    assert fields - set(declared) == RUNTIME[proc], "a struct field nobody fills"


def test_choice_indexes_match_the_c_enums():
    try:
        _, lib = native.load("_tlsh_openssl")
    except native.NativeMissing as e:
        pytest.skip(str(e))
    d = params.defaults
    for handoff, c in [("pinned", lib.TLSH_HANDOFF_PINNED), ("per-connection",
                       lib.TLSH_HANDOFF_PER_CONN), ("per-message", lib.TLSH_HANDOFF_PER_MSG)]:
        assert c_fields(d(handoff=handoff), "stand")["handoff"] == c
    for lock, c in [("spin", lib.TLSH_LOCK_SPIN), ("futex", lib.TLSH_LOCK_FUTEX),
                    ("robust", lib.TLSH_LOCK_ROBUST)]:
        assert c_fields(d(lock=lock), "stand")["lock_flavor"] == c
    for mem, c in [("shared", lib.TLSH_MEM_SHARED), ("interpose", lib.TLSH_MEM_SHARED),
                   ("private", lib.TLSH_MEM_PRIVATE)]:
        assert c_fields(d(memory=mem), "stand")["memory"] == c
    for kind, c in [("block", lib.TLSH_FAULT_BLOCK), ("spin", lib.TLSH_FAULT_SPIN),
                    ("die", lib.TLSH_FAULT_DIE), ("stop", lib.TLSH_FAULT_STOP),
                    ("crash", lib.TLSH_FAULT_CRASH), ("leak", lib.TLSH_FAULT_LEAK),
                    ("hog", lib.TLSH_FAULT_NONE), ("none", lib.TLSH_FAULT_NONE)]:
        assert c_fields(d(fault={"kind": kind}), "stand")["fault_kind"] == c


def test_flags_fields_and_declarations_are_one_list():
    p = runflags.parser()
    flags = {o for a in p._actions for o in a.option_strings}
    for prm in PARAMS:
        assert hasattr(RunConfig(), prm.name)
        if prm.flag is not None:
            assert prm.option in flags
            assert prm.help, prm.name
    assert {f.name for f in RunConfig.__dataclass_fields__.values()} == {p.name for p in PARAMS}


def test_a_declared_range_is_enforced_from_the_flag():
    p = runflags.parser()
    for prm in PARAMS:
        if prm.range and prm.flag is not None and prm.type in (int, float):
            too_big = prm.range[1] * 2 + 1
            with pytest.raises(params.ConfigError, match=prm.option):
                runflags.config_from_args(p.parse_args([prm.option, str(too_big)]))


def test_loadgen_fields_follow_the_run():
    cfg = runflags.config_from_args(runflags.parser().parse_args(
        ["--load", "churn", "--churn-every", "7", "--rate", "100", "--clients", "4",
         "--conns", "8", "--tls", "1.2", "--ciphers", "ECDHE-ECDSA-AES128-GCM-SHA256"]))
    lg = c_fields(cfg, "loadgen")
    assert lg["churn"] == 7 and lg["rate"] == 25 and lg["tls_version"] == 12
    assert lg["ciphers"] == "ECDHE-ECDSA-AES128-GCM-SHA256"
    persistent = c_fields(params.defaults(), "loadgen")
    assert persistent["churn"] == 0
