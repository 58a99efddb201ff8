"""Fixtures for the GRPO tests: a small preprocessed data folder made here; the tiny model is shared."""

from __future__ import annotations

from pathlib import Path

import pytest
from grpo_fixtures import write_data


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    return write_data(tmp_path_factory.mktemp("grpo-data") / "data")
