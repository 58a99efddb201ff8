"""Shared test fixtures: the repository's path, chapter guideline files, a dead process id and the tiny model.

The default tiny model takes many seconds to build on a small CPU, and almost
every test folder needs one, so it is built once per session here and shared.
Tests only read it; one that must write into a model folder copies it first.
A changed file in it fails the session at teardown, naming the file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from guideline_files import write_guideline_files

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def guidelines_dir(tmp_path_factory) -> Path:
    """A folder of chapter_<n>.json files in the published release's format, written here in our own words."""
    return write_guideline_files(tmp_path_factory.mktemp("guidelines"))


@pytest.fixture(scope="session")
def release_guidelines_dir() -> Path:
    """The published guideline release itself, for tests of its contents; give its folder to run them."""
    folder = os.environ.get("DEEPICD_GUIDELINES_DIR", "")
    if not folder or not Path(folder).is_dir():
        pytest.skip("tests of the published guideline files need DEEPICD_GUIDELINES_DIR=<folder of chapter_<n>.json>")
    return Path(folder)


@pytest.fixture(scope="session")
def dead_pid() -> int:
    """The id of a process that has exited: what a killed run's temporaries are named after."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """The default tiny model (`deepicd tiny-model` with the `default` preset), built once per session. Read-only."""
    from deepicd import tiny

    folder = tmp_path_factory.mktemp("tiny-model") / "model"
    tiny.run(dataclasses.replace(tiny.load_tiny_config(), out=str(folder)))
    before = _digests(folder)
    yield folder
    after = _digests(folder)
    changed = sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))
    if changed:
        pytest.fail(f"a test modified the shared tiny model folder {folder}: {', '.join(changed)}; copy it first")
