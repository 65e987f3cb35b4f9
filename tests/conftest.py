import pytest


@pytest.fixture(scope="session")
def core():
    from harness.builds import native
    return native.core()
