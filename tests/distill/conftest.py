"""Fixtures of the distillation tests: small preprocess-shaped split tables made here."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from split_writer import notes_frame, write_split

# (code, chief complaint, history) triples that read like admission notes.
CASES = [
    ("I214", "chest pain", "crushing substernal pressure radiating to the jaw, diaphoresis and elevated troponin"),
    ("J189", "cough and fever", "productive cough, rigors, crackles over the right lower lobe and an infiltrate"),
    ("N390", "dysuria", "burning on urination, urinary frequency, suprapubic tenderness and cloudy urine"),
    ("A419", "confusion and fever", "hypotension, tachycardia, lactate elevation and rigors without a clear source"),
    ("K3580", "abdominal pain", "periumbilical pain migrating to the right lower quadrant with anorexia and nausea"),
    ("M5116", "back pain", "lumbar radicular pain down the left leg with numbness and a positive straight leg raise"),
    ("C4A9", "skin lesion", "a rapidly growing violaceous nodule on the scalp with regional lymphadenopathy"),
]


def note_for(index: int, marker: str = "") -> tuple[str, str]:
    code, complaint, history = CASES[index % len(CASES)]
    text = (
        f"CHIEF COMPLAINT: {complaint}\n\n"
        f"PRESENT ILLNESS: patient number {index} presents with {history}. {marker}\n\n"
        "MEDICAL HISTORY: hypertension, hyperlipidemia\n\n"
        "SOCIAL HISTORY: retired teacher, lives with spouse"
    )
    return text, code


def split_table(count: int, first_id: int = 20000000, markers: dict[int, str] | None = None) -> pd.DataFrame:
    """`count` admissions of `count // 2` patients, in preprocess's column layout."""
    markers = markers or {}
    texts, codes = zip(*(note_for(i, markers.get(i, "")) for i in range(count))) if count else ((), ())
    return notes_frame(texts, codes, first_id=first_id, subject_ids=[10000000 + i // 2 for i in range(count)],
                       codes=[[code, "I10"] for code in codes])


@pytest.fixture
def make_data(tmp_path: Path):
    """Write a data folder with one split table and return the folder."""

    def make(count: int = 20, split: str = "train", markers: dict[int, str] | None = None) -> Path:
        folder = tmp_path / "data"
        folder.mkdir(exist_ok=True)
        return write_split(folder, split, split_table(count, markers=markers))

    return make
