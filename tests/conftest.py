import signal

import pytest

# Tests interrupt runs with SIGINT.  A suite started in the background of a
# non-interactive shell inherits SIGINT ignored, and so would every process it
# starts: give them the default disposition (a handler here is reset to the
# default across exec).
signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def core():
    from harness.builds import native
    return native.core()
