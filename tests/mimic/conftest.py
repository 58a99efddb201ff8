"""Fixtures of the MIMIC tests: one small synthetic MIMIC-IV and its preprocessed datasets, shared per session."""

from __future__ import annotations

from pathlib import Path

import pytest
from mimickit import preprocess

from deepicd.mimic.synth import SynthConfig, run as synth


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> Path:
    """600 synthetic admissions over 30 first codes: the size of the CPU demo."""
    return synth(SynthConfig(out=str(tmp_path_factory.mktemp("synth") / "mimic"), admissions=600, seed=11, codes=30)).out


@pytest.fixture(scope="session")
def synth_out(synth_dir, tmp_path_factory) -> Path:
    return preprocess(synth_dir, tmp_path_factory.mktemp("prep") / "data")
