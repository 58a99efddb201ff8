"""Writing a preprocessing run's files: split tables, VERL rows, labels, splits and report.

Split tables are built and written a row group at a time, so memory does not
grow with the size of a split. Every file is a pure function of the kept rows,
the ontology's answers and the config: reruns are byte-identical.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from deepicd import config as config_lib
from deepicd.mimic import labels, report, splits, verl_rows
from deepicd.mimic.collect import Collected, Inputs, Kept, guess_versions
from deepicd.mimic.ontology import Ontology
from deepicd.split_tables import NOTES_SCHEMA, VERL_SCHEMA

if TYPE_CHECKING:
    from deepicd.preprocess import PreprocessConfig


def _split_table(kept: Kept, rows: np.ndarray, words: list[int], ontology: Ontology) -> pa.Table:
    info = [ontology.codes[kept.first_code[i]] for i in rows]
    return pa.Table.from_pydict({
        "subject_id": kept.subject_id[rows], "hadm_id": kept.hadm_id[rows],
        "note_id": [kept.note_id[i] for i in rows], "text": [kept.text[i] for i in rows],
        "first_code": [kept.first_code[i] for i in rows], "codes": [kept.codes[i] for i in rows],
        "chapter": [x.chapter for x in info], "category": [x.category for x in info],
        "n_words": [words[i] for i in rows], "n_chars": [len(kept.text[i]) for i in rows],
        "sections": [list(kept.sections[i]) for i in rows],
        "admission_type": [kept.admission_type[i] for i in rows], "gender": [kept.gender[i] for i in rows],
        "anchor_age": [kept.anchor_age[i] for i in rows],
    }, schema=NOTES_SCHEMA)


ROWS_PER_GROUP = 50_000  # rows built and written at a time: bounds memory, fixes the parquet layout


def _write_split(
    folder: Path, name: str, kept: Kept, rows: np.ndarray, words: list[int], ontology: Ontology, data_source: str
) -> None:
    """`<name>.parquet` and `verl/<name>.parquet`, built and written a row group at a time."""
    with pq.ParquetWriter(folder / f"{name}.parquet", NOTES_SCHEMA) as plain, \
            pq.ParquetWriter(folder / "verl" / f"{name}.parquet", VERL_SCHEMA) as verl:
        for start in range(0, max(len(rows), 1), ROWS_PER_GROUP):
            table = _split_table(kept, rows[start: start + ROWS_PER_GROUP], words, ontology)
            plain.write_table(table)
            verl.write_table(verl_rows.table(
                name, table["text"], table["first_code"], table["hadm_id"], table["subject_id"], data_source,
                first_index=start,
            ))


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def write_outputs(
    folder: Path, collected: Collected, inputs: Inputs, config: PreprocessConfig, ontology: Ontology
) -> dict:
    """Write every output into `folder`; returns the manifest's counts."""
    kept = collected.kept
    split_of = splits.assign(
        kept.subject_id, kept.first_code, (config.split.train, config.split.val, config.split.test),
        config.split.min_count, config.seed,
    )
    words = [len(text.split()) for text in kept.text]
    order_key = splits.mix(kept.hadm_id, config.seed + 1)
    (folder / "verl").mkdir(parents=True)
    split_codes, split_patients, chapters, split_words = {}, {}, {}, {}
    for index, name in enumerate(splits.SPLITS):
        rows = np.flatnonzero(split_of == index)
        rows = rows[np.lexsort((kept.hadm_id[rows], order_key[rows]))]
        _write_split(folder, name, kept, rows, words, ontology, config.data_source)
        pa.default_memory_pool().release_unused()
        split_codes[name] = [kept.first_code[i] for i in rows]
        split_patients[name] = len(set(kept.subject_id[rows].tolist()))
        chapters[name] = [ontology.codes[code].chapter for code in split_codes[name]]
        split_words[name] = [words[i] for i in rows]

    label_rows = labels.label_rows(split_codes["train"], split_codes["val"], split_codes["test"], ontology)
    _write_csv(folder / "labels.csv", list(labels.LABEL_COLUMNS),
               [[row[c] if row[c] is not None else "" for c in labels.LABEL_COLUMNS] for row in label_rows])
    by_patient = np.lexsort((kept.hadm_id, kept.subject_id))
    _write_csv(folder / "splits.csv", ["subject_id", "hadm_id", "split"],
               [[int(kept.subject_id[i]), int(kept.hadm_id[i]), splits.SPLITS[split_of[i]]] for i in by_patient])

    section_counts = Counter()
    for keys in kept.sections:
        section_counts.update(keys)
    ordered_sections = Counter({key: section_counts[key] for key in config.note.sections})
    versions = guess_versions(inputs)
    config_dict = config_lib.to_dict(config)
    collected.side_counts["distinct kept first codes not in the ICD-10-CM release (kept as is)"] = sum(
        not info.in_release for info in ontology.codes.values())
    (folder / "report.md").write_text(report.render(
        funnel=collected.funnel, admissions=collected.admissions, side_counts=collected.side_counts,
        split_codes=split_codes, split_patients=split_patients, chapters=chapters, words=split_words,
        section_counts=ordered_sections, config_lines=yaml.safe_dump(config_dict, sort_keys=False).splitlines(),
        versions=versions, ontology=ontology,
    ), encoding="utf-8")
    return {
        "admissions": collected.admissions,
        "dropped": dict(collected.funnel),
        "kept": len(kept.text),
        "splits": {name: len(split_codes[name]) for name in splits.SPLITS},
        "patients": split_patients,
        "label_space": len(label_rows) - 1,
        "checks": collected.side_counts,
        "mimic_versions": versions,
    }
