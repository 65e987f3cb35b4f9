import pytest


@pytest.fixture(scope="session")
def core():
    from harness import native
    return native.core()
