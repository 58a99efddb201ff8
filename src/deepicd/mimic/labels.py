"""The task's targets and label space, from MIMIC-IV's `diagnoses_icd` table.

The target is the admission's first-listed code (seq_num = 1) when it is an
ICD-10 code. Rows in the file are not guaranteed to be in seq_num order, and
codes are stored as CHAR(7), possibly space-padded, so the rows are normalised
and sorted before anything is read from them. All of this is columnar
(pyarrow/numpy): MIMIC-IV holds millions of diagnosis rows.

The label space is what a model can learn: the first codes seen in the training
split. Anything else a model predicts, and any val/test code outside it, is the
NIL class of the evaluation. Chapters and descriptions come from
`deepicd.mimic.ontology`, which a run may keep in a side process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from deepicd.mimic.ontology import Ontology


NIL = "NIL"
LABEL_COLUMNS = (
    "code", "train_count", "val_count", "test_count", "chapter", "chapter_title", "category",
    "description", "in_release",
)


@dataclass
class DiagnosisStats:
    rows: int = 0
    rows_without_hadm: int = 0
    padded_codes: int = 0
    # Rules for faults of the table, counted here and listed in the report:
    duplicate_rows: int = 0  # a code listed twice for one admission (same version): kept once, at its first seq_num
    conflicting_first: int = 0  # admissions with several different seq_num 1 codes: the first in file order is the target


def compact(batch: pa.RecordBatch, stats: DiagnosisStats) -> pa.Table:
    """Keep what targets need from a batch of `diagnoses_icd`, codes stripped of padding and dots."""
    raw = batch.column("icd_code")
    code = pc.replace_substring(pc.utf8_trim_whitespace(raw), ".", "")
    stats.rows += batch.num_rows
    stats.padded_codes += int(pc.sum(pc.not_equal(pc.utf8_length(code), pc.utf8_length(raw))).as_py() or 0)
    table = pa.table({
        "hadm_id": batch.column("hadm_id"),
        "seq_num": pc.cast(batch.column("seq_num"), pa.int32()),
        "icd_version": pc.cast(batch.column("icd_version"), pa.int16()),
        "icd_code": code,
    })
    valid = pc.is_valid(table["hadm_id"])
    stats.rows_without_hadm += int(table.num_rows - (pc.sum(valid).as_py() or 0))
    return table.filter(valid)


def targets(diagnoses: pa.Table, stats: DiagnosisStats | None = None) -> pa.Table:
    """One row per admission: `hadm_id`, `first_version`, `first_code` (both null without a seq_num 1 row),
    and `codes`, the admission's non-empty ICD-10 codes in seq_num order, each once. Sorted by hadm_id.

    Faults of the table are resolved by fixed rules and counted in `stats`: a code repeated within an
    admission is kept at its first seq_num; of several seq_num 1 rows, the first in file order is the target.
    """
    stats = stats if stats is not None else DiagnosisStats()
    if diagnoses.num_rows == 0:
        return pa.table({
            "hadm_id": pa.array([], pa.int64()), "first_version": pa.array([], pa.int16()),
            "first_code": pa.array([], pa.string()), "codes": pa.array([], pa.list_(pa.string())),
        })
    # stable, nulls last: rows of one admission keep file order among equal seq_num
    order = pc.sort_indices(diagnoses, sort_keys=[("hadm_id", "ascending"), ("seq_num", "ascending")])
    hadm = diagnoses["hadm_id"].take(order).to_numpy()
    seq = pc.fill_null(diagnoses["seq_num"].take(order), 0).to_numpy()
    version = pc.fill_null(diagnoses["icd_version"].take(order), 0).to_numpy()
    code = diagnoses["icd_code"].take(order).combine_chunks()
    new_group = np.empty(len(hadm), dtype=bool)
    new_group[0] = True
    np.not_equal(hadm[1:], hadm[:-1], out=new_group[1:])
    starts = np.flatnonzero(new_group)
    has_first = seq[starts] == 1
    first_code = code.take(pa.array(starts))
    first_code = pc.if_else(pa.array(has_first), first_code, pa.scalar(None, pa.string()))
    first_version = pa.array(version[starts].astype(np.int16), mask=~has_first)
    group = np.cumsum(new_group) - 1
    repeated = _repeated(group, version, code)
    stats.duplicate_rows += int(repeated.sum())
    stats.conflicting_first += _conflicting_first(group, seq, repeated)
    keep = (version == 10) & (pc.utf8_length(code).to_numpy(zero_copy_only=False) > 0) & ~repeated
    counts = np.bincount(group[keep], minlength=len(starts))
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    codes = pa.ListArray.from_arrays(pa.array(offsets), code.filter(pa.array(keep)))
    return pa.table({
        "hadm_id": pa.array(hadm[starts]), "first_version": first_version,
        "first_code": first_code, "codes": codes,
    })


def _repeated(group: np.ndarray, version: np.ndarray, code: pa.Array) -> np.ndarray:
    """Rows whose (admission, version, code) occurred on an earlier row of the sorted table."""
    code_ids = pc.fill_null(code, "").dictionary_encode().indices.to_numpy()
    keys = np.stack([group, version.astype(np.int64), code_ids.astype(np.int64)], axis=1)
    _, first = np.unique(keys, axis=0, return_index=True)
    repeated = np.ones(len(group), dtype=bool)
    repeated[first] = False
    return repeated


def _conflicting_first(group: np.ndarray, seq: np.ndarray, repeated: np.ndarray) -> int:
    """Admissions with more than one distinct seq_num 1 code (exact repeats are not a conflict)."""
    firsts = group[(seq == 1) & ~repeated]
    return int((np.bincount(firsts) > 1).sum()) if len(firsts) else 0


def label_rows(train: Iterable[str], val: Iterable[str], test: Iterable[str], ontology: Ontology) -> list[dict]:
    """The label space (train first codes, most frequent first) with per-split counts, then a NIL row."""
    counts: dict[str, list[int]] = {}
    for index, codes in enumerate((train, val, test)):
        for code in codes:
            counts.setdefault(code, [0, 0, 0])[index] += 1
    rows = []
    nil = [0, 0, 0]
    for code, (n_train, n_val, n_test) in counts.items():
        if n_train == 0:
            nil[1] += n_val
            nil[2] += n_test
            continue
        info = ontology.codes[code]
        rows.append({
            "code": code, "train_count": n_train, "val_count": n_val, "test_count": n_test,
            "chapter": info.chapter, "chapter_title": info.chapter_title, "category": info.category,
            "description": info.description, "in_release": info.in_release,
        })
    rows.sort(key=lambda row: (-row["train_count"], row["code"]))
    rows.append({
        "code": NIL, "train_count": 0, "val_count": nil[1], "test_count": nil[2], "chapter": None,
        "chapter_title": "", "category": NIL, "description": "outside the training label space",
        "in_release": False,
    })
    return rows
