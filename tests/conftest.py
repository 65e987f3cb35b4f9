import atexit
import os
import shutil
import signal
import tempfile

import pytest

# The suite never depends on the user's own builds (libs add / libs build in
# ~/.cache/tlsharness): it runs with an empty cache of its own, made here
# before any test module asks which builds exist (tests/test_backend_contract.py
# parametrizes over them at collection), and inherited by every process the
# tests start.  TLSH_TEST_USER_CACHE=1 runs it against the user's cache.  The
# project's own builds (harness/_native, build/libs: make setup, the source
# recipes) are in the checkout and are tested either way.
if os.environ.get("TLSH_TEST_USER_CACHE") != "1":
    _CACHE = tempfile.mkdtemp(prefix="tlsh-test-cache-")
    os.environ["TLSH_CACHE"] = _CACHE
    atexit.register(shutil.rmtree, _CACHE, True)

# Tests interrupt runs with SIGINT.  A suite started in the background of a
# non-interactive shell inherits SIGINT ignored, and so would every process it
# starts: give them the default disposition (a handler here is reset to the
# default across exec).
signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def core():
    from harness.builds import native
    return native.core()
