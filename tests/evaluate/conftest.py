"""Fixtures of the evaluation tests: a small preprocess-shaped data folder made in the test."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from evalkit import TEST, TRAIN, split_table
from split_writer import write_split


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A preprocess output folder: train/val/test parquet and labels.csv with a NIL row."""
    folder = tmp_path / "data"
    folder.mkdir()
    write_split(folder, "train", split_table(TRAIN, 1000))
    write_split(folder, "val", split_table(["J189", "I214"], 2000))
    write_split(folder, "test", split_table(TEST, 3000))
    labels = pd.DataFrame({"code": ["I214", "J189", "K359", "N390", "NIL"], "count": [4, 3, 2, 1, 0]})
    labels.to_csv(folder / "labels.csv", index=False)
    return folder
