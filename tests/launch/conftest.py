"""Fixtures of the launch-readiness tests: the lock script, the GPU lock, and the import probes.

The probes start one fresh interpreter per launch module (seconds each), so they
run once per session and every test here reads the same records.
"""

from __future__ import annotations

import launchkit
import pytest


@pytest.fixture(scope="session")
def lock_script():
    """scripts/lock_gpu.py, imported from its file."""
    return launchkit.load_lock_script()


@pytest.fixture(scope="session")
def lock(lock_script) -> dict[str, str]:
    """The checked-in GPU lock as name -> version."""
    if not lock_script.LOCK.is_file():
        pytest.fail(f"no GPU lock at {lock_script.LOCK.relative_to(launchkit.REPO_ROOT)}; run `make lock-gpu`")
    return lock_script.read_lock()[0]


@pytest.fixture(scope="session")
def launch_records() -> dict[str, dict]:
    """One import record per launch module (see launchkit.probe_all)."""
    return launchkit.probe_all(list(launchkit.LAUNCH_MODULES))
