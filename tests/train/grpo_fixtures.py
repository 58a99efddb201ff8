"""Test data shaped like `deepicd preprocess` output, for the GRPO tests."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

# Real ICD-10-CM codes, including one with a letter in third position (C4A).
CODES = ("I10", "M5116", "J189", "N179", "E119", "A419", "I214", "C4A0")


def write_data(folder: Path, train: int = 12, val: int = 4, note_words: int = 12) -> Path:
    """A folder shaped like `deepicd preprocess` output: {train,val}.parquet and verl/{train,val}.parquet."""
    from deepicd.mimic import verl_rows

    (folder / "verl").mkdir(parents=True, exist_ok=True)
    for split, count in (("train", train), ("val", val)):
        notes = [
            f"CHIEF COMPLAINT: pain {i}\n\nPRESENT ILLNESS: " + " ".join(["patient reports symptoms"] * note_words)
            for i in range(count)
        ]
        codes = [CODES[i % len(CODES)] for i in range(count)]
        hadm = [20_000_000 + i for i in range(count)]
        subjects = [10_000_000 + i for i in range(count)]
        table = verl_rows.table(split, notes, codes, hadm, subjects, "mimic-iv")
        pq.write_table(table, folder / "verl" / f"{split}.parquet")
        plain = pa.table({"subject_id": subjects, "hadm_id": hadm, "text": notes, "first_code": codes,
                          "codes": [[code] for code in codes]})
        pq.write_table(plain, folder / f"{split}.parquet")
    return folder
