"""Test data shaped like `deepicd preprocess` output, for the GRPO tests."""

from __future__ import annotations

from pathlib import Path

from split_writer import notes_frame, write_split

# Real ICD-10-CM codes, including one with a letter in third position (C4A).
CODES = ("I10", "M5116", "J189", "N179", "E119", "A419", "I214", "C4A0")


def write_data(folder: Path, train: int = 12, val: int = 4, note_words: int = 12) -> Path:
    """A folder shaped like `deepicd preprocess` output: {train,val}.parquet and verl/{train,val}.parquet."""
    for split, count in (("train", train), ("val", val)):
        notes = [
            f"CHIEF COMPLAINT: pain {i}\n\nPRESENT ILLNESS: " + " ".join(["patient reports symptoms"] * note_words)
            for i in range(count)
        ]
        codes = [CODES[i % len(CODES)] for i in range(count)]
        frame = notes_frame(notes, codes, subject_ids=[10_000_000 + i for i in range(count)])
        write_split(folder, split, frame, verl=True)
    return folder
