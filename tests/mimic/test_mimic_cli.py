"""`deepicd synth-mimic` and `deepicd preprocess` through the CLI: the happy path and every bad input."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from mimickit import NOTE_COLUMNS, Mimic, standard_sections, summary, write_csv_gz
from typer.testing import CliRunner

from deepicd.cli import app

runner = CliRunner()


def _mimic(root: Path) -> Path:
    m = Mimic()
    for subject in range(1, 7):
        m.admission(subject, 100 + subject, ["J189", "I10"], text=summary(standard_sections()))
    return m.write(root)


def _preprocess(mimic: Path, out: Path, *extra: str):
    return runner.invoke(app, ["preprocess", "--mimic-dir", str(mimic), "--out", str(out), "progress=false",
                               "workers=0", *extra])


def test_synth_then_preprocess(tmp_path):
    mimic = tmp_path / "mimic"
    result = runner.invoke(app, ["synth-mimic", "--out", str(mimic), "--admissions", "120", "--seed", "2",
                                 "--codes", "8"])
    assert result.exit_code == 0, result.output
    assert (mimic / "note" / "discharge.csv.gz").is_file()
    again = runner.invoke(app, ["synth-mimic", "--out", str(mimic), "--admissions", "5"])
    assert again.exit_code == 2 and "other settings (admissions, codes, seed)" in again.output
    same = runner.invoke(app, ["synth-mimic", "--out", str(mimic), "--admissions", "120", "--seed", "2",
                               "--codes", "8"])
    assert same.exit_code == 0 and "already holds this run" in same.output
    result = _preprocess(mimic, tmp_path / "data", "split.min_count=2")
    assert result.exit_code == 0, result.output
    assert "kept" in result.output
    manifest = json.loads((tmp_path / "data" / "manifest.json").read_text())
    assert manifest["config"]["split"]["min_count"] == 2
    assert manifest["result"]["counts"]["kept"] == sum(manifest["result"]["counts"]["splits"].values()) > 60


def test_separate_note_root(tmp_path):
    root = _mimic(tmp_path / "mimic-iv" / "3.1")
    note_root = tmp_path / "mimic-iv-note" / "2.2"
    (note_root / "note").mkdir(parents=True)
    (root / "note" / "discharge.csv.gz").rename(note_root / "note" / "discharge.csv.gz")
    assert _preprocess(root, tmp_path / "no-notes").exit_code == 2
    result = _preprocess(root, tmp_path / "data", "--note-dir", str(note_root), "split.min_count=1")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "data" / "manifest.json").read_text())
    assert manifest["result"]["mimic_versions"] == {"mimic-iv": "3.1", "mimic-iv-note": "2.2"}


def _expect_error(mimic: Path, out: Path, *fragments: str, extra: tuple[str, ...] = ()) -> None:
    result = _preprocess(mimic, out, *extra)
    assert result.exit_code == 2, result.output
    for fragment in fragments:
        assert fragment in result.output, (fragment, result.output)
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]


def test_missing_file(tmp_path):
    mimic = _mimic(tmp_path / "mimic")
    (mimic / "hosp" / "diagnoses_icd.csv.gz").unlink()
    _expect_error(mimic, tmp_path / "out", "diagnoses_icd.csv.gz not found")


def test_missing_column(tmp_path):
    mimic = _mimic(tmp_path / "mimic")
    write_csv_gz(mimic / "hosp" / "diagnoses_icd.csv.gz", ["subject_id", "hadm_id", "seq_num", "icd10"],
                 [[1, 101, 1, "J189"]])
    _expect_error(mimic, tmp_path / "out", "diagnoses_icd.csv.gz", "icd_code", "icd_version")


def test_truncated_gzip(tmp_path):
    mimic = _mimic(tmp_path / "mimic")
    path = mimic / "note" / "discharge.csv.gz"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])
    _expect_error(mimic, tmp_path / "out", "discharge.csv.gz", "truncated")


def test_not_gzip(tmp_path):
    mimic = _mimic(tmp_path / "mimic")
    (mimic / "hosp" / "patients.csv.gz").write_bytes(b"subject_id,gender,anchor_age\n1,F,60\n")
    _expect_error(mimic, tmp_path / "out", "patients.csv.gz", "gzip")


def test_header_only_table(tmp_path):
    mimic = _mimic(tmp_path / "mimic")
    write_csv_gz(mimic / "hosp" / "admissions.csv.gz", ["subject_id", "hadm_id", "admission_type"], [])
    _expect_error(mimic, tmp_path / "out", "admissions.csv.gz", "no rows")


def test_zero_byte_table(tmp_path):
    mimic = _mimic(tmp_path / "mimic")
    with gzip.open(mimic / "note" / "discharge.csv.gz", "wb"):
        pass
    _expect_error(mimic, tmp_path / "out", "discharge.csv.gz", "empty")


def test_undecodable_bytes(tmp_path):
    mimic = _mimic(tmp_path / "mimic")
    tail = b'"9-DS-1",9,109,"DS",1,"2150-01-05 00:00:00","2150-01-05 13:00:00","Chief Complaint:\n\xff\xfe pain"\n'
    write_csv_gz(mimic / "note" / "discharge.csv.gz", NOTE_COLUMNS, [], raw_tail=tail)
    _expect_error(mimic, tmp_path / "out", "discharge.csv.gz", "'text'", "UTF-8")


def test_value_of_the_wrong_type(tmp_path):
    mimic = _mimic(tmp_path / "mimic")
    write_csv_gz(mimic / "hosp" / "diagnoses_icd.csv.gz", ["subject_id", "hadm_id", "seq_num", "icd_code",
                                                           "icd_version"], [[1, "abc", 1, "J189", 10]])
    _expect_error(mimic, tmp_path / "out", "diagnoses_icd.csv.gz", "'hadm_id'")


def test_missing_folder_and_bad_config(tmp_path):
    _expect_error(tmp_path / "nowhere", tmp_path / "out", "not found")
    mimic = _mimic(tmp_path / "mimic")
    _expect_error(mimic, tmp_path / "out", "no_such_key", extra=("no_such_key=1",))
    _expect_error(mimic, tmp_path / "out", "hospital_course_typo", extra=("note.sections=[hospital_course_typo]",))
    _expect_error(mimic, tmp_path / "out", "split ratios", extra=("split.train=-1",))


@pytest.mark.parametrize("command", ["preprocess", "synth-mimic"])
def test_help_documents_every_option(command):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0
    for option in (("--mimic-dir", "--note-dir", "--out", "--overwrite", "--config") if command == "preprocess"
                   else ("--out", "--admissions", "--seed", "--codes", "--length", "--icd9-fraction")):
        assert option in result.output
