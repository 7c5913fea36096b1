"""Shared test fixtures, and the rule for tests that need what this machine may lack.

`@pytest.mark.shared_data("name", ...)` marks a test that reads files of
`../shared/data` (beside the checkout; never copied into it). When one is missing the
test is skipped on a developer's machine but FAILS when the environment variable `CI`
is set: CI must run every test, so a missing data folder cannot pass silently.
`require_or_skip(reason)` applies the same rule to other needs (Xvfb).
"""

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# Tests never write the user's brick cache (~/.cache/loopnerf): it is off, and the tests
# of the cache itself point it at a temporary folder.
os.environ["LOOPNERF_CACHE_DIR"] = "off"


def require_or_skip(reason: str):
    """Skip the running test, or fail it when `CI` is set."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this is a failure, not a skip)", pytrace=False)
    pytest.skip(reason)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    for mark in item.iter_markers("shared_data"):
        missing = [name for name in mark.args if not (SHARED_DATA / name).exists()]
        if missing:
            require_or_skip(f"needs {', '.join(missing)} in {SHARED_DATA}")


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run a module's torch ops on one thread: on a 2-core machine shared with Taichi's
    thread pool, torch's OpenMP threads can spin-wait and run many times slower."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
