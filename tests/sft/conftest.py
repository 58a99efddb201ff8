"""Fixtures of the SFT tests: a distilled SFT set made with a scripted teacher; the tiny model is shared."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from sft_kit import TraceTeacher, admissions
from split_writer import write_split

from deepicd.distill import run as distill


@pytest.fixture(scope="session")
def distilled(tmp_path_factory) -> Path:
    """A `deepicd distill` output folder: 120 admissions of 6 codes, one short well-formed trace each."""
    root = tmp_path_factory.mktemp("sft-data")
    (root / "data").mkdir()
    write_split(root / "data", "train", admissions(120, 1000))
    settings = distill.load_distill_config("tiny-cpu", ["generator.model=scripted-teacher", "filters.min_words=5"])
    distill.run(dataclasses.replace(settings, data=str(root / "data"), split="train", out=str(root / "distill")), make_generator=TraceTeacher)
    return root / "distill"
