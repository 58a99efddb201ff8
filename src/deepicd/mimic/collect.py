"""Reading a MIMIC-IV extract into the admissions that make task examples, counting every drop.

One pass over each gzipped table, in bounded memory: diagnoses first (small
per row), which tells which admissions have an ICD-10 first code; then the
discharge notes, streamed block by block, where only those admissions' notes
are cut into sections (`cutter`). The raw notes are never held in memory, only
the much shorter admission notes that are kept. Every admission of
admissions.csv.gz is either kept or counted under one drop reason.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm import tqdm

from deepicd.errors import UserError
from deepicd.mimic import labels, tables
from deepicd.mimic.cutter import NOTES_PER_TASK, NoteCutter

if TYPE_CHECKING:
    from deepicd.preprocess import PreprocessConfig


@dataclass
class Inputs:
    """The four MIMIC files a run reads."""

    patients: Path
    admissions: Path
    diagnoses: Path
    discharge: Path

    def items(self) -> list[tuple[str, Path]]:
        return [("patients", self.patients), ("admissions", self.admissions),
                ("diagnoses_icd", self.diagnoses), ("discharge", self.discharge)]


def locate_inputs(config: PreprocessConfig) -> Inputs:
    """Find the tables under `mimic_dir` (hosp/) and `note_dir` (note/, default: mimic_dir)."""
    root = Path(config.mimic_dir)
    if not root.is_dir():
        raise UserError(f"MIMIC-IV folder not found: {root}")
    note_root = Path(config.note_dir) if config.note_dir else root
    if not note_root.is_dir():
        raise UserError(f"MIMIC-IV-Note folder not found: {note_root}")
    spec = tables.TABLE_COLUMNS
    return Inputs(
        tables.locate(root, spec["patients"]), tables.locate(root, spec["admissions"]),
        tables.locate(root, spec["diagnoses_icd"]), tables.locate(note_root, spec["discharge"]),
    )


_VERSION_PART = re.compile(r"^v?(\d+\.\d+(?:\.\d+)?)$")
_NAMED_VERSION = re.compile(r"(mimic-?iv(?:-note)?)[^0-9]*?v?(\d+\.\d+(?:\.\d+)?)$", re.IGNORECASE)


def guess_versions(inputs: Inputs) -> dict[str, str | None]:
    """MIMIC versions from folder names such as `mimiciv/3.1/hosp` or `mimic-iv-note/2.2/note`."""
    found: dict[str, str | None] = {"mimic-iv": None, "mimic-iv-note": None}
    for path in (inputs.diagnoses, inputs.discharge):
        parts = path.resolve().parts
        for index, part in enumerate(parts):
            named = _NAMED_VERSION.search(part)
            if named:
                name, version = named.group(1).lower(), named.group(2)
            elif _VERSION_PART.match(part) and index > 0 and "mimic" in parts[index - 1].lower():
                name, version = parts[index - 1].lower(), _VERSION_PART.match(part).group(1)
            else:
                continue
            found["mimic-iv-note" if "note" in name else "mimic-iv"] = version
    return found


@dataclass
class Kept:
    """The kept admissions, one entry per row, in hadm_id order."""

    subject_id: np.ndarray
    hadm_id: np.ndarray
    note_id: list[str]
    text: list[str]
    first_code: list[str]
    codes: list[list[str]]
    sections: list[tuple[str, ...]]
    admission_type: list[str | None]
    gender: list[str | None]
    anchor_age: list[int | None]


@dataclass
class Collected:
    """What a run keeps, and how many admissions it dropped for which reason (`funnel`, in order)."""

    kept: Kept
    admissions: int
    funnel: list[tuple[str, int]]
    side_counts: dict[str, int]


def _progress_bar(config: PreprocessConfig, path: Path, desc: str) -> tqdm:
    return tqdm(total=path.stat().st_size, unit="B", unit_scale=True, desc=desc, disable=not config.progress,
                leave=False)


def _read_small(path: Path, name: str, config: PreprocessConfig) -> pa.Table:
    return tables.read_table(path, tables.TABLE_COLUMNS[name], block_size=config.block_size_mb << 20)


def _diagnoses(path: Path, config: PreprocessConfig, stats: labels.DiagnosisStats) -> pa.Table:
    spec = tables.TABLE_COLUMNS["diagnoses_icd"]
    with _progress_bar(config, path, "diagnoses") as bar:
        def advance(position: int) -> None:
            bar.update(position - bar.n)

        parts = [labels.compact(batch, stats)
                 for batch in tables.iter_batches(path, spec, block_size=config.block_size_mb << 20,
                                                  on_progress=advance)]
    return labels.targets(pa.concat_tables(parts), stats)


def _notes(
    path: Path, candidates: np.ndarray, config: PreprocessConfig
) -> tuple[dict[int, tuple], np.ndarray, Counter]:
    """Admission notes of the candidate admissions, keyed by hadm_id, and the hadm_ids of every note.

    When an admission has several notes the one with the lowest (note_seq, note_id) is used.
    """
    spec = tables.TABLE_COLUMNS["discharge"]
    value_set = pa.array(candidates, pa.int64())
    chosen: dict[int, tuple] = {}
    all_hadm: list[np.ndarray] = []
    counts: Counter = Counter()

    def keep(tag: list[tuple], notes: list) -> None:
        for (hadm_id, note_id, seq), note in zip(tag, notes):
            key = (seq if seq is not None else 1 << 62, note_id or "")
            previous = chosen.get(hadm_id)
            if previous is not None:
                counts["extra notes of an admission (lowest note_seq used)"] += 1
                if previous[0] <= key:
                    continue
            chosen[hadm_id] = (key, note_id, note)

    cutter = NoteCutter(tuple(config.note.sections), tuple(config.note.require_any), config.workers)
    with cutter, _progress_bar(config, path, "discharge notes") as bar:
        def advance(position: int) -> None:
            bar.update(position - bar.n)

        for batch in tables.iter_batches(path, spec, block_size=config.block_size_mb << 20, on_progress=advance):
            hadm = batch.column("hadm_id")
            counts["notes"] += batch.num_rows
            counts["notes without hadm_id"] += hadm.null_count
            all_hadm.append(pc.drop_null(hadm).to_numpy())
            sub = batch.filter(pc.fill_null(pc.is_in(hadm, value_set=value_set), False))
            meta = list(zip(sub.column("hadm_id").to_pylist(), sub.column("note_id").to_pylist(),
                            sub.column("note_seq").to_pylist()))
            texts = sub.column("text").to_pylist()
            for start in range(0, len(texts), NOTES_PER_TASK):
                for tag, notes in cutter.feed(meta[start: start + NOTES_PER_TASK],
                                              texts[start: start + NOTES_PER_TASK]):
                    keep(tag, notes)
        for tag, notes in cutter.drain():
            keep(tag, notes)
    every = np.unique(np.concatenate(all_hadm)) if all_hadm else np.array([], dtype=np.int64)
    return chosen, every, counts


def collect(inputs: Inputs, config: PreprocessConfig) -> Collected:
    """Read the four tables and keep the admissions that make a task example, counting every drop."""
    admissions = _read_small(inputs.admissions, "admissions", config)
    patients = _read_small(inputs.patients, "patients", config)
    side: dict[str, int] = {}

    adm = admissions.filter(pc.is_valid(admissions["hadm_id"]))
    side["admissions rows without hadm_id"] = admissions.num_rows - adm.num_rows
    adm_hadm_all = adm["hadm_id"].to_numpy()
    unique_hadm, first_index = np.unique(adm_hadm_all, return_index=True)
    side["duplicate hadm_id rows in admissions"] = len(adm_hadm_all) - len(unique_hadm)
    adm = adm.take(pa.array(np.sort(first_index)))
    adm_hadm = adm["hadm_id"].to_numpy()
    n_adm = len(adm_hadm)

    stats = labels.DiagnosisStats()
    target = _diagnoses(inputs.diagnoses, config, stats)
    side["diagnosis rows"] = stats.rows
    side["diagnosis codes stripped of padding"] = stats.padded_codes
    side["diagnosis rows without hadm_id"] = stats.rows_without_hadm
    side["duplicate diagnosis rows (a code repeated for one admission; kept once)"] = stats.duplicate_rows
    side["admissions with conflicting seq_num 1 codes (first row in file order is the target)"] = stats.conflicting_first
    tgt_hadm = target["hadm_id"].to_numpy()
    side["admissions in diagnoses_icd but not in admissions"] = int((~np.isin(tgt_hadm, adm_hadm)).sum())

    # diagnoses_icd has rows (an empty table is refused), so every admission has a clipped position
    position_clipped = np.minimum(np.searchsorted(tgt_hadm, adm_hadm), len(tgt_hadm) - 1)
    has_codes = tgt_hadm[position_clipped] == adm_hadm
    version = pc.fill_null(target["first_version"], 0).to_numpy()
    first = target["first_code"]
    first_ok = pc.fill_null(pc.greater(pc.utf8_length(first), 0), False).to_numpy(zero_copy_only=False)
    adm_version = np.where(has_codes, version[position_clipped], 0)
    icd10 = has_codes & (adm_version == 10) & first_ok[position_clipped]
    icd9 = has_codes & (adm_version == 9)

    chosen, note_hadm, note_counts = _notes(inputs.discharge, adm_hadm[icd10], config)
    side["discharge notes"] = note_counts["notes"]
    side["discharge notes without hadm_id"] = note_counts["notes without hadm_id"]
    side["discharge notes of admissions not in admissions"] = int((~np.isin(note_hadm, adm_hadm)).sum())
    side["extra notes of an admission (lowest note_seq used)"] = note_counts[
        "extra notes of an admission (lowest note_seq used)"]
    has_note = np.isin(adm_hadm, note_hadm)

    funnel: list[tuple[str, int]] = []
    remaining = np.ones(n_adm, dtype=bool)
    for reason, mask in (
        ("no diagnosis codes", ~has_codes),
        ("first code (seq_num 1) is ICD-9", icd9),
        ("no usable ICD-10 first code (no seq_num 1 row or empty code)", ~icd10),
        ("no discharge note", ~has_note),
    ):
        dropped = remaining & mask
        funnel.append((reason, int(dropped.sum())))
        remaining &= ~dropped
    without_sections = [i for i in np.flatnonzero(remaining) if chosen[int(adm_hadm[i])][2] is None]
    funnel.append(("no chief complaint, present illness or medical history", len(without_sections)))
    remaining[without_sections] = False

    gender, age = _patient_lookup(patients)
    rows = np.flatnonzero(remaining)
    rows = rows[np.argsort(adm_hadm[rows], kind="stable")]
    subject = pc.fill_null(adm["subject_id"], -1).to_numpy()
    adm_type = adm["admission_type"].to_pylist()
    tgt_rows = pa.array(position_clipped[rows])
    notes = [chosen[int(adm_hadm[i])] for i in rows]
    kept = Kept(
        subject_id=subject[rows].astype(np.int64),
        hadm_id=adm_hadm[rows].astype(np.int64),
        note_id=[n[1] for n in notes],
        text=[n[2].text for n in notes],
        first_code=target["first_code"].take(tgt_rows).to_pylist(),
        codes=target["codes"].take(tgt_rows).to_pylist(),
        sections=[n[2].sections for n in notes],
        admission_type=[adm_type[i] or None for i in rows],
        gender=[gender.get(int(subject[i])) for i in rows],
        anchor_age=[age.get(int(subject[i])) for i in rows],
    )
    return Collected(kept, n_adm, funnel, side)


def _patient_lookup(patients: pa.Table) -> tuple[dict[int, str], dict[int, int]]:
    subject = patients["subject_id"].to_pylist()
    gender = dict(zip(subject, patients["gender"].to_pylist()))
    age = dict(zip(subject, patients["anchor_age"].to_pylist()))
    return {k: v for k, v in gender.items() if k is not None and v}, {k: v for k, v in age.items() if k is not None}
