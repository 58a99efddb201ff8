"""The preprocess output, declared once: what `<split>.parquet` and `verl/<split>.parquet` hold, and the
one function every later stage reads a split's notes with.

`deepicd preprocess` writes both tables with the schemas below; `evaluate`,
`distill`, `format-data`, `sft-data` and the TRL backend of `train-grpo` read
the notes table through `read_notes_file`, so a damaged or foreign table is
refused the same way everywhere: one line naming the file, the column and the
first row at fault.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from deepicd import icd
from deepicd.errors import UserError

# One row per admission of the split, in the order preprocess wrote them.
NOTES_SCHEMA = pa.schema([
    ("subject_id", pa.int64()),            # the patient: splits are patient-disjoint
    ("hadm_id", pa.int64()),               # the admission: unique within and across splits
    ("note_id", pa.string()),              # the discharge note the admission note was cut from
    ("text", pa.string()),                 # the leak-free admission note (the model's input)
    ("first_code", pa.string()),           # the target: the seq_num 1 ICD-10-CM code, without the dot
    ("codes", pa.list_(pa.string())),      # every ICD-10-CM code of the stay, in seq_num order, each once
    ("chapter", pa.int8()),                # ICD-10-CM chapter number of first_code
    ("category", pa.string()),             # the three-character category of first_code
    ("n_words", pa.int32()),               # words of `text`
    ("n_chars", pa.int32()),               # characters of `text`
    ("sections", pa.list_(pa.string())),   # the admission-time sections kept, in note order
    ("admission_type", pa.string()),       # from admissions.csv
    ("gender", pa.string()),               # from patients.csv
    ("anchor_age", pa.int16()),            # from patients.csv
])

# The columns every reader needs; the others are descriptive and optional for a hand-made table.
KEY_COLUMNS = ("hadm_id", "text", "first_code")

MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
# The same admissions as VERL's RL dataset reads them (`data.train_files`).
VERL_SCHEMA = pa.schema([
    ("data_source", pa.string()),          # selects the reward function; ours scores every source alike
    ("prompt", pa.list_(MESSAGE)),        # the task prompt as chat messages (system, user)
    ("ability", pa.string()),
    ("reward_model", pa.struct([("style", pa.string()), ("ground_truth", pa.list_(pa.string()))])),
    ("extra_info", pa.struct([
        ("split", pa.string()), ("index", pa.int64()), ("hadm_id", pa.int64()), ("subject_id", pa.int64()),
        ("note", pa.string()), ("prefill", pa.string()),
    ])),
])
VERL_COLUMNS = tuple(VERL_SCHEMA.names)


def notes_path(data_dir: str | Path, split: str) -> Path:
    return Path(data_dir) / f"{split}.parquet"


def verl_path(data_dir: str | Path, split: str) -> Path:
    return Path(data_dir) / "verl" / f"{split}.parquet"


def find_notes(data_dir: str | Path, split: str) -> Path:
    """The notes table of `split` in a preprocess folder; the error lists the splits that are there."""
    folder = Path(data_dir)
    if not folder.is_dir():
        raise UserError(f"data folder not found: {folder} (run `deepicd preprocess` first)")
    path = notes_path(folder, split)
    if not path.is_file():
        found = ", ".join(sorted(p.name for p in folder.glob("*.parquet"))) or "no parquet files"
        raise UserError(f"split {split!r} not found: no {path} (the folder holds {found})")
    return path


def read_notes(data_dir: str | Path, split: str, *, columns: Sequence[str] | None = None, limit: int = 0) -> pd.DataFrame:
    """The notes of one split of a preprocess folder (see `read_notes_file`)."""
    return read_notes_file(find_notes(data_dir, split), columns=columns, limit=limit)


def columns_of(path: str | Path) -> list[str]:
    """The column names of a parquet file; a file that is not parquet is a UserError naming it."""
    import pyarrow.parquet as pq

    try:
        return pq.read_schema(path).names
    except Exception as exc:  # pyarrow raises several types for a file that is not parquet
        raise UserError(f"cannot read {path} as parquet: {exc}") from exc


def _require(path: Path, wanted: Sequence[str]) -> None:
    present = columns_of(path)
    missing = [c for c in wanted if c not in present]
    if missing:
        raise UserError(f"{path} lacks column(s) {', '.join(missing)} (has: {', '.join(present)})")


def read_notes_file(path: str | Path, *, columns: Sequence[str] | None = None, limit: int = 0) -> pd.DataFrame:
    """A notes table, checked: the key columns and `columns` present, rows there, `hadm_id` unique and
    every `first_code` a well-formed ICD-10-CM code (without the dot). `columns=None` reads them all;
    `limit` keeps the first rows. Rows stay in file order."""
    path = Path(path)
    wanted = list(dict.fromkeys([*KEY_COLUMNS, *(columns or [])]))
    _require(path, wanted)
    frame = pd.read_parquet(path, columns=None if columns is None else wanted)
    if limit:
        frame = frame.head(limit)
    if frame.empty:
        raise UserError(f"{path} holds no notes")
    frame = frame.reset_index(drop=True)
    keys = frame["hadm_id"].astype(str)
    duplicated = keys.duplicated()
    if duplicated.any():
        raise UserError(f"{path}: column hadm_id has duplicates ({int(duplicated.sum())}), e.g. {keys[duplicated].iloc[0]}")
    codes = frame["first_code"].fillna("").map(icd.normalize)
    empty = (codes == "").to_numpy()
    if empty.any():
        row = int(np.flatnonzero(empty)[0])
        raise UserError(f"{path}: column first_code is empty in row {row} (hadm_id {keys.iloc[row]})")
    malformed = (~codes.map(icd.is_well_formed)).to_numpy()
    if malformed.any():
        row = int(np.flatnonzero(malformed)[0])
        raise UserError(f"{path}: column first_code holds {frame['first_code'].iloc[row]!r} in row {row} "
                        f"(hadm_id {keys.iloc[row]}), not a well-formed ICD-10-CM code")
    return frame


def read_first_codes(path: str | Path) -> np.ndarray:
    """The normalised `first_code` column of a notes table, empty values left out (label spaces, baselines)."""
    path = Path(path)
    _require(path, ["first_code"])
    column = pd.read_parquet(path, columns=["first_code"])["first_code"].dropna()
    return np.asarray([code for code in (icd.normalize(c) for c in column) if code], dtype=object)
