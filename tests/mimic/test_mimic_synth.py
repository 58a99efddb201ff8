"""The synthetic MIMIC-IV: real layout and columns, every quirk preprocess must handle, a learnable signal."""

from __future__ import annotations

import gzip
from collections import Counter

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from mimickit import ADMISSION_COLUMNS, DIAGNOSIS_COLUMNS, NOTE_COLUMNS, PATIENT_COLUMNS

from deepicd import icd
from deepicd.errors import UserError
from deepicd.mimic.synth import SynthConfig, run as synth

FILES = {
    "hosp/patients.csv.gz": PATIENT_COLUMNS,
    "hosp/admissions.csv.gz": ADMISSION_COLUMNS,
    "hosp/diagnoses_icd.csv.gz": DIAGNOSIS_COLUMNS,
    "note/discharge.csv.gz": NOTE_COLUMNS,
}


def _read(path):
    return pacsv.read_csv(path, parse_options=pacsv.ParseOptions(newlines_in_values=True),
                          convert_options=pacsv.ConvertOptions(column_types={"icd_code": "string"},
                                                               strings_can_be_null=False)).to_pylist()


def test_layout_and_column_names(synth_dir):
    for name, columns in FILES.items():
        with gzip.open(synth_dir / name, "rt") as handle:
            assert handle.readline().rstrip("\n").split(",") == columns, name


def test_same_seed_same_bytes_other_seed_other_data(tmp_path, synth_dir):
    again = synth(SynthConfig(out=str(tmp_path / "again"), admissions=600, seed=11, codes=30)).out
    other = synth(SynthConfig(out=str(tmp_path / "other"), admissions=600, seed=12, codes=30)).out
    for name in FILES:
        assert (synth_dir / name).read_bytes() == (again / name).read_bytes(), name
    assert (synth_dir / "note/discharge.csv.gz").read_bytes() != (other / "note/discharge.csv.gz").read_bytes()
    assert synth(SynthConfig(out=str(tmp_path / "again"), admissions=600, seed=11, codes=30)).already_done  # the same data
    with pytest.raises(UserError, match=r"other settings \(admissions, codes, seed\).*--overwrite"):
        synth(SynthConfig(out=str(tmp_path / "again"), admissions=10, seed=1))
    assert synth(SynthConfig(out=str(tmp_path / "again"), admissions=10, seed=1, overwrite=True)).admissions == 10


def test_notes_carry_the_template_and_its_quirks(synth_dir):
    texts = [row["text"] for row in _read(synth_dir / "note/discharge.csv.gz")]
    joined = "\n".join(texts)
    for header in ("Chief Complaint:", "Major Surgical or Invasive Procedure:", "History of Present Illness:",
                   "Past Medical History:", "Social History:", "Family History:", "Physical Exam:",
                   "Pertinent Results:", "Brief Hospital Course:", "Medications on Admission:",
                   "Discharge Medications:", "Discharge Disposition:", "Discharge Diagnosis:",
                   "Discharge Condition:", "Discharge Instructions:", "Followup Instructions:"):
        assert sum(f"\n{header}\n" in t for t in texts) > len(texts) * 0.9, header
    assert all(t.startswith(" \nName:  ___") and "\n \n" in t for t in texts)
    assert sum("Social History:\n___\nFamily History:" in t for t in texts) > len(texts) * 0.2
    blank_then_exam = sum("\n \nDISCHARGE PHYSICAL EXAM:" in t or "\n \nDISCHARGE EXAM:" in t for t in texts)
    joined_exam = sum("\nDISCHARGE PHYSICAL EXAM:" in t and "\n \nDISCHARGE PHYSICAL EXAM:" not in t
                      for t in texts)
    assert blank_then_exam > 10 and joined_exam > 10
    assert "Primary: " in joined and "___" in joined


def test_admissions_codes_and_notes_cover_every_case(synth_dir):
    admissions = _read(synth_dir / "hosp/admissions.csv.gz")
    diagnoses = _read(synth_dir / "hosp/diagnoses_icd.csv.gz")
    notes = _read(synth_dir / "note/discharge.csv.gz")
    assert len(admissions) == 600
    per_patient = Counter(row["subject_id"] for row in admissions)
    assert max(per_patient.values()) >= 3 and len(per_patient) < 600
    noted = {row["hadm_id"] for row in notes}
    coded = {row["hadm_id"] for row in diagnoses}
    hadms = {row["hadm_id"] for row in admissions}
    assert noted < hadms and coded < hadms  # some admissions lack a note, some lack codes
    assert any(row["icd_version"] == 9 for row in diagnoses)
    assert any(row["icd_code"] != row["icd_code"].strip() for row in diagnoses)
    order = {}
    for row in diagnoses:
        order.setdefault(row["hadm_id"], []).append(row["seq_num"])
    assert any(seqs != sorted(seqs) for seqs in order.values())
    first = [row["icd_code"].strip() for row in diagnoses if row["seq_num"] == 1 and row["icd_version"] == 10]
    assert len(set(first)) == 30 and all(icd.is_billable(code) for code in first)
    counts = sorted(Counter(first).values(), reverse=True)
    assert counts[0] >= 5 * counts[len(counts) // 2]  # long tail


def test_a_small_model_learns_the_chapter_from_a_few_hundred_notes(synth_out):
    """A bag-of-words naive Bayes, trained on the train split, finds the chapter of test notes."""
    import math
    import re

    def words(text):
        return re.findall(r"[a-z]{3,}", text.lower())

    train = pq.read_table(synth_out / "train.parquet").to_pylist()
    test = pq.read_table(synth_out / "test.parquet").to_pylist()
    assert len(train) < 400
    counts, totals, priors = {}, Counter(), Counter(row["chapter"] for row in train)
    for row in train:
        bag = counts.setdefault(row["chapter"], Counter())
        bag.update(words(row["text"]))
    vocabulary = set().union(*counts.values())
    for chapter, bag in counts.items():
        totals[chapter] = sum(bag.values()) + len(vocabulary)

    def predict(text):
        tokens = [w for w in words(text) if w in vocabulary]
        return max(counts, key=lambda c: math.log(priors[c]) + sum(
            math.log((counts[c][w] + 1) / totals[c]) for w in tokens))

    accuracy = sum(predict(row["text"]) == row["chapter"] for row in test) / len(test)
    majority = sum(row["chapter"] == priors.most_common(1)[0][0] for row in test) / len(test)
    assert accuracy >= 0.6 and accuracy >= majority + 0.3, (accuracy, majority)


def test_long_notes_are_longer(tmp_path):
    short = synth(SynthConfig(out=str(tmp_path / "short"), admissions=40, seed=1, codes=5)).out
    long = synth(SynthConfig(out=str(tmp_path / "long"), admissions=40, seed=1, codes=5, length="long")).out
    words = [sum(len(r["text"].split()) for r in _read(p / "note/discharge.csv.gz")) for p in (short, long)]
    assert words[1] > 1.3 * words[0]


def test_clustered_codes_make_the_three_levels_different_tasks(tmp_path):
    """Several codes per category and several categories per chapter, so the levels can disagree."""
    mimic = synth(SynthConfig(out=str(tmp_path / "mimic"), admissions=500, seed=3, codes=48, codes_per_category=3,
                                  categories_per_chapter=3)).out
    diagnoses = _read(mimic / "hosp/diagnoses_icd.csv.gz")
    first = {row["icd_code"].strip() for row in diagnoses if row["seq_num"] == 1 and row["icd_version"] == 10}
    categories = Counter(code[:3] for code in first)
    chapters = Counter(icd.chapter(code).number for code in categories)
    assert len(first) >= 40 and len(categories) <= len(first) / 2 and len(chapters) <= len(categories) / 2
    assert sum(count >= 2 for count in categories.values()) >= len(categories) * 3 // 4
    assert sum(count >= 2 for count in chapters.values()) >= len(chapters) * 3 // 4
    notes = " ".join(row["text"] for row in _read(mimic / "note/discharge.csv.gz"))
    siblings = [code for code in first if categories[code[:3]] >= 2][:6]
    assert all(icd.tabular_entries(code)[0].description in notes for code in siblings)  # each sibling has its own words


def test_clustered_vocabulary_refuses_sizes_it_cannot_hold(tmp_path):
    with pytest.raises(UserError, match="codes per category"):
        synth(SynthConfig(out=str(tmp_path / "mimic"), admissions=10, codes=100_000, codes_per_category=3, categories_per_chapter=3)).out
