"""Shared test fixtures: paths to the repository, the shared reference data, and the tiny model.

The default tiny model takes many seconds to build on a small CPU, and almost
every test folder needs one, so it is built once per session here and shared.
Tests only read it; one that must write into a model folder copies it first.
A changed file in it fails the session at teardown, naming the file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def guidelines_dir() -> Path:
    folder = SHARED / "data" / "icd10cm_guidelines"
    if not folder.is_dir():
        pytest.skip(f"guideline files not found at {folder}")
    return folder


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
    tiny.build(folder, tiny.load_config())
    before = _digests(folder)
    yield folder
    after = _digests(folder)
    changed = sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))
    if changed:
        pytest.fail(f"a test modified the shared tiny model folder {folder}: {', '.join(changed)}; copy it first")
