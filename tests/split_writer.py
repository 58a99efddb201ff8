"""One writer of data folders shaped like `deepicd preprocess` output, for every test that needs one.

Each test area makes up its own notes (a scripted teacher reads them, the
evaluation counts their codes, GRPO rolls them out), but they all reach the
stages as the same files: `<split>.parquet` with preprocess's key columns, and
for GRPO `verl/<split>.parquet`, named by `deepicd.split_tables` and written
here only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from deepicd import split_tables


def notes_frame(texts: Sequence[str], first_codes: Sequence[str], *, hadm_ids: Sequence[int] | None = None,
                subject_ids: Sequence[int] | None = None, codes: Sequence[list[str]] | None = None,
                first_id: int = 20_000_000) -> pd.DataFrame:
    """Admissions with preprocess's key columns; ids count up from `first_id`, one patient per admission."""
    count = len(texts)
    hadm_ids = list(hadm_ids) if hadm_ids is not None else [first_id + i for i in range(count)]
    return pd.DataFrame({
        "subject_id": list(subject_ids) if subject_ids is not None else list(hadm_ids),
        "hadm_id": hadm_ids,
        "text": list(texts),
        "first_code": list(first_codes),
        "codes": list(codes) if codes is not None else [[code] for code in first_codes],
    })


def write_split(folder: Path, split: str, frame: pd.DataFrame, *, verl: bool = False,
                data_source: str = "mimic-iv") -> Path:
    """`frame` as FOLDER/<split>.parquet (and FOLDER/verl/<split>.parquet for GRPO); returns FOLDER."""
    import pyarrow.parquet as pq

    from deepicd.mimic import verl_rows

    path = split_tables.notes_path(folder, split)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)
    if verl:
        rows = verl_rows.table(split, list(frame["text"]), list(frame["first_code"]), list(frame["hadm_id"]),
                               list(frame["subject_id"]), data_source)
        target = split_tables.verl_path(folder, split)
        target.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(rows, target)
    return folder
