"""Property-based tests (Hypothesis) over the run flags and scenario files:
whatever a user types or writes, the answer is a valid configuration or one
clear error of the documented kind — never another exception."""
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.spec import runflags, scenario
from harness.spec.config import ConfigError


# values a user might type for any flag: numbers of every size and sign, words, junk
VALUES = st.one_of(
    st.integers(min_value=-10**15, max_value=10**15).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", "0", "-1", "1e309", "nan", "inf", "shared", "private", "1.3", "1.2",
                     "spin", "block:1:300", "block:x", "leak:9:1", "none", "pshared,prefork-thread",
                     "openssl", "wolfssl", "churn", "persistent", "per-message", "other", "exit"]),
    st.text(alphabet=string.printable, max_size=12),
)


def flags():
    p = runflags.parser()
    out = []
    for a in p._actions:
        if a.option_strings and a.dest not in ("out", "lib_prefix", "json"):
            out.append((a.option_strings[0], a.nargs == 0))
    return out


FLAGS = flags()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(FLAGS), VALUES), max_size=6))
def test_any_run_flags_give_a_config_or_one_clear_error(picks):
    argv = []
    for (flag, is_switch), value in picks:
        argv += [flag] if is_switch else [flag, value]
    try:
        ns = runflags.parser().parse_args(argv)
        cfg = runflags.config_from_args(ns)
    except (runflags.FlagError, ConfigError) as e:
        msg = str(e)
        assert msg and "\n" not in msg and "Traceback" not in msg
        return
    assert cfg.workers >= 1 and cfg.duration > 0          # what validate() promised


PARAM_VALUES = st.one_of(st.integers(-10**6, 10**9), st.floats(allow_nan=True),
                         st.booleans(), st.none(), st.text(max_size=8),
                         st.lists(st.text(max_size=4), max_size=3))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(sorted(runflags.dests()) + ["bogus", "tls_version"]),
                       PARAM_VALUES, max_size=5))
def test_any_scenario_params_load_or_name_the_file(tmp_path_factory, params):
    d = tmp_path_factory.mktemp("sc")
    f = d / "sc.py"
    f.write_text("from harness.spec.scenario import Scenario\n"
                 f"SCENARIO = Scenario(summary='x', params={params!r})\n")
    try:
        sc = scenario.load(str(f))
    except scenario.ScenarioError as e:
        assert str(e).startswith(str(f)), e          # the file (and line) is named
        return
    assert sc.params == params
