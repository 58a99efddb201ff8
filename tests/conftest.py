"""Shared test fixtures: paths to the repository, the shared reference data, and a tiny model."""

from __future__ import annotations

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
