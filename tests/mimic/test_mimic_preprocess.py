"""The preprocess stage end to end on a hand-written MIMIC-IV folder, and on the shared synthetic one."""

from __future__ import annotations

import csv
import gzip
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from mimickit import Mimic, preprocess, standard_sections, summary

from deepicd.errors import UserError
from deepicd.prompts import task


def _rows(out: Path) -> dict[int, dict]:
    rows = {}
    for split in ("train", "val", "test"):
        for row in pq.read_table(out / f"{split}.parquet").to_pylist():
            rows[row["hadm_id"]] = dict(row, split=split)
    return rows


@pytest.fixture(scope="module")
def handmade(tmp_path_factory) -> tuple[Path, Path]:
    m = Mimic()
    note = summary(standard_sections())
    # one patient, three admissions; the second has its rows out of seq_num order and a padded code
    m.admission(1, 101, ["I214", "I10", "E785"], text=note)
    m.admission(1, 102, text=summary(standard_sections(complaint="syncope", diagnosis="heart block")))
    m.diagnoses += [(1, 102, 3, "E119", 10), (1, 102, 1, "I442   ", 10), (1, 102, 2, "Z9581", 10)]
    m.admission(1, 103, ["J189"], text=summary(standard_sections(complaint="cough", diagnosis="pneumonia")))
    m.admission(2, 201, ["4280", "4019"], version=9, text=note)  # ICD-9: excluded
    m.admission(3, 301, ["K8000"])  # no note
    m.admission(4, 401, [], text=note)  # no codes
    m.admission(5, 501, ["N390"], text=summary([("Physical Exam", "VS: stable"), ("Family History", "None")]))
    m.admission(6, 601, ["A419", "R6521"], text=summary(standard_sections(complaint="first note")))
    m.notes.append(("6-DS-0", 6, 601, 0, summary(standard_sections(complaint="earlier note"))))
    m.admission(7, 701, ["E119"], version=10, text=note)
    m.diagnoses.append((7, 701, 2, "25000", 9))  # an ICD-9 row inside an ICD-10 admission is not a code
    m.notes.append(("99-DS-1", 99, 999, 1, note))  # a note of an admission that admissions.csv lacks
    root = m.write(tmp_path_factory.mktemp("mimic") / "mimiciv" / "3.1")
    out = preprocess(root, tmp_path_factory.mktemp("out") / "data", "split.min_count=1", "seed=3")
    return root, out


def test_targets_follow_seq_num_not_row_order_and_lose_their_padding(handmade):
    rows = _rows(handmade[1])
    assert rows[101]["first_code"] == "I214" and rows[101]["codes"] == ["I214", "I10", "E785"]
    assert rows[102]["first_code"] == "I442" and rows[102]["codes"] == ["I442", "Z9581", "E119"]
    assert rows[701]["codes"] == ["E119"]
    assert rows[102]["chapter"] == 9 and rows[102]["category"] == "I44"


def test_dropped_admissions_and_reasons(handmade):
    root, out = handmade
    rows = _rows(out)
    assert sorted(rows) == [101, 102, 103, 601, 701]
    manifest = json.loads((out / "manifest.json").read_text())
    dropped = manifest["result"]["counts"]["dropped"]
    assert manifest["result"]["counts"]["admissions"] == 9 and manifest["result"]["counts"]["kept"] == 5
    assert dropped["no diagnosis codes"] == 1
    assert dropped["first code (seq_num 1) is ICD-9"] == 1
    assert dropped["no discharge note"] == 1
    assert dropped["no chief complaint, present illness or medical history"] == 1
    report = (out / "report.md").read_text()
    assert "| dropped: first code (seq_num 1) is ICD-9 | 1 | 11.1% |" in report
    assert "| **kept** | **5** | **55.6% |" not in report and "| **kept** | **5** | **55.6%** |" in report
    assert "discharge notes of admissions not in admissions: 1" in report
    assert "diagnosis codes stripped of padding: 1" in report


def test_admission_notes_hold_no_discharge_facts_and_lowest_note_seq_wins(handmade):
    rows = _rows(handmade[1])
    assert rows[101]["text"].startswith("CHIEF COMPLAINT: chest pain\n\nPRESENT ILLNESS: 67F")
    for row in rows.values():
        for leaked in ("NSTEMI", "heart block", "pneumonia", "Clopidogrel", "DISCHARGE", "resolved"):
            assert leaked not in row["text"]
        assert row["n_words"] == len(row["text"].split()) and row["n_chars"] == len(row["text"])
    assert rows[601]["text"].startswith("CHIEF COMPLAINT: earlier note") and rows[601]["note_id"] == "6-DS-0"


def test_patient_with_several_admissions_sits_in_one_split(handmade):
    rows = _rows(handmade[1])
    assert len({rows[h]["split"] for h in (101, 102, 103)}) == 1
    with open(handmade[1] / "splits.csv", newline="") as handle:
        listed = list(csv.DictReader(handle))
    assert [(int(r["subject_id"]), int(r["hadm_id"])) for r in listed] == sorted(
        (row["subject_id"], hadm) for hadm, row in rows.items())
    assert {int(r["hadm_id"]): r["split"] for r in listed} == {h: r["split"] for h, r in rows.items()}
    assert set(listed[0]) == {"subject_id", "hadm_id", "split"}


def test_verl_rows_follow_the_rlhf_dataset_schema(handmade):
    out = handmade[1]
    for split in ("train", "val", "test"):
        plain = pq.read_table(out / f"{split}.parquet").to_pylist()
        verl = pq.read_table(out / "verl" / f"{split}.parquet").to_pylist()
        assert len(plain) == len(verl)
        for index, (row, example) in enumerate(zip(plain, verl)):
            assert example["data_source"] == "deepicd/mimic-iv"
            assert example["ability"] == "clinical-coding"
            assert example["prompt"] == task.messages(row["text"])
            assert example["reward_model"] == {"style": "rule", "ground_truth": [row["first_code"]]}
            info = example["extra_info"]
            assert (info["split"], info["index"], info["hadm_id"], info["note"], info["prefill"]) == (
                split, index, row["hadm_id"], row["text"], "<think>")


def test_labels_list_train_codes_then_nil(handmade):
    out = handmade[1]
    rows = _rows(out)
    with open(out / "labels.csv", newline="") as handle:
        labels = list(csv.DictReader(handle))
    train_codes = sorted({r["first_code"] for r in rows.values() if r["split"] == "train"})
    assert sorted(row["code"] for row in labels[:-1]) == train_codes
    nil = labels[-1]
    assert nil["code"] == "NIL"
    outside = [r for r in rows.values() if r["split"] != "train" and r["first_code"] not in train_codes]
    assert int(nil["val_count"]) + int(nil["test_count"]) == len(outside)
    i214 = next((row for row in labels if row["code"] == "I214"), None)
    if i214 is not None:
        assert i214["chapter"] == "9" and i214["category"] == "I21"
        assert i214["description"] == "Non-ST elevation (NSTEMI) myocardial infarction"


def test_manifest_records_inputs_versions_and_config(handmade):
    root, out = handmade
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["inputs"]) == {"patients", "admissions", "diagnoses_icd", "discharge"}
    discharge = manifest["inputs"]["discharge"]
    assert discharge["bytes"] == (root / "note" / "discharge.csv.gz").stat().st_size
    assert len(discharge["sha256"]) == 64
    assert manifest["result"]["mimic_versions"]["mimic-iv"] == "3.1"
    assert manifest["config"]["split"]["min_count"] == 1 and manifest["seed"] == 3
    assert manifest["prompts"] == {"task": task.VERSION}
    assert {"pyarrow", "simple-icd-10-cm", "python"} <= set(manifest["versions"])
    assert "verl/train.parquet" in manifest["outputs"] and "labels.csv" in manifest["outputs"]


def test_same_inputs_give_byte_identical_tables_and_an_existing_output_is_kept(handmade, tmp_path):
    root, first = handmade
    again = preprocess(root, tmp_path / "again", "split.min_count=1", "seed=3", "workers=2")
    for name in ("train.parquet", "val.parquet", "test.parquet", "verl/train.parquet", "verl/test.parquet",
                 "labels.csv", "splits.csv"):
        assert (first / name).read_bytes() == (again / name).read_bytes(), name
    # the report differs only in the configuration it quotes (output path, workers)
    head = (first / "report.md").read_text().split("## Configuration")[0]
    assert head == (again / "report.md").read_text().split("## Configuration")[0]
    before, recorded = (again / "splits.csv").read_bytes(), (again / "manifest.json").read_bytes()
    # The same run again (workers change the speed, not the output): nothing is done.
    from deepicd.preprocess import load_preprocess_config, run
    settings = [f"mimic_dir={root}", f"out={again}", "progress=false", "split.min_count=1", "seed=3"]
    same = run(load_preprocess_config("default", [*settings, "workers=0"]))
    assert same.already_done and same.counts == json.loads(recorded)["result"]["counts"]
    assert (again / "manifest.json").read_bytes() == recorded
    with pytest.raises(UserError, match="already holds a preprocess run with other settings \\(seed\\).*--overwrite"):
        preprocess(root, again, "split.min_count=1")
    assert (again / "splits.csv").read_bytes() == before
    preprocess(root, again, "split.min_count=1", "seed=4", "overwrite=true")
    assert json.loads((again / "manifest.json").read_text())["seed"] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again"]
    # The same files elsewhere are the same inputs; other bytes are another run.
    moved = shutil.copytree(root, tmp_path / "moved")
    assert run(load_preprocess_config("default", [f"mimic_dir={moved}", f"out={again}", "progress=false", "workers=0",
                                       "split.min_count=1", "seed=4"])).already_done
    changed = moved / "hosp" / "admissions.csv.gz"
    changed.write_bytes(gzip.compress(gzip.decompress(changed.read_bytes()), mtime=0))
    with pytest.raises(UserError, match=r"other settings \(input admissions\)"):
        preprocess(moved, again, "split.min_count=1", "seed=4")
    # An output folder that holds the input would delete it.
    with pytest.raises(UserError, match="holds the input"):
        preprocess(root, root.parent, "split.min_count=1", "overwrite=true")


def test_an_interrupted_run_leaves_nothing(handmade, tmp_path, monkeypatch):
    from deepicd.mimic import outputs

    def fail(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(outputs.verl_rows, "table", fail)
    with pytest.raises(KeyboardInterrupt):
        preprocess(handmade[0], tmp_path / "data")
    assert list(tmp_path.iterdir()) == []


def test_synthetic_dataset_is_split_stratified_and_leak_free(synth_out):
    rows = _rows(synth_out)
    counts = {split: sum(r["split"] == split for r in rows.values()) for split in ("train", "val", "test")}
    total = sum(counts.values())
    assert counts["train"] / total == pytest.approx(0.7, abs=0.05)
    assert counts["val"] / total == pytest.approx(0.1, abs=0.04)
    assert counts["test"] / total == pytest.approx(0.2, abs=0.04)
    subjects = {}
    for row in rows.values():
        assert subjects.setdefault(row["subject_id"], row["split"]) == row["split"]
    for row in rows.values():
        for marker in ("Discharge", "DISCHARGE", "Hospital Course", "Pertinent Results", "Primary:", "resolving",
                       "Followup", "Attending"):
            assert marker not in row["text"], marker
        assert 60 <= row["n_words"] <= 300


def test_duplicate_and_conflicting_diagnosis_rows_are_resolved_by_rule_and_counted(tmp_path):
    m = Mimic()
    note = summary(standard_sections())
    m.admission(1, 101, ["I214", "I10"], text=note)
    m.diagnoses += [(1, 101, 3, "I10", 10), (1, 101, 2, "I10", 10)]  # I10 listed three times
    m.admission(2, 201, ["J189", "E119"], text=note)
    m.diagnoses.append((2, 201, 1, "K359", 10))  # a second seq_num 1 row, later in the file
    m.admission(3, 301, ["N390"], text=note)
    m.diagnoses.append((3, 301, 1, "N390", 10))  # the same seq_num 1 row twice: a repeat, not a conflict
    out = preprocess(m.write(tmp_path / "mimic"), tmp_path / "data", "split.min_count=1")
    rows = _rows(out)
    assert rows[101]["codes"] == ["I214", "I10"]
    assert rows[201]["first_code"] == "J189" and rows[201]["codes"] == ["J189", "K359", "E119"]
    assert rows[301]["codes"] == ["N390"]
    checks = json.loads((out / "manifest.json").read_text())["result"]["counts"]["checks"]
    assert checks["duplicate diagnosis rows (a code repeated for one admission; kept once)"] == 3
    assert checks["admissions with conflicting seq_num 1 codes (first row in file order is the target)"] == 1
    report = (out / "report.md").read_text()
    assert "duplicate diagnosis rows (a code repeated for one admission; kept once): 3" in report


def test_a_large_drop_is_warned_on_the_console_with_its_reasons(handmade, tmp_path):
    from typer.testing import CliRunner

    from deepicd.cli import app

    root, _ = handmade
    args = ["preprocess", "--mimic-dir", str(root), "--out", str(tmp_path / "data"), "progress=false", "workers=0",
            "split.min_count=1"]
    quiet = CliRunner().invoke(app, args)
    assert quiet.exit_code == 0 and "warning" not in quiet.output
    loud = CliRunner().invoke(app, [*args, "--overwrite", "warn_dropped_share=0.3"])
    assert loud.exit_code == 0, loud.output
    assert "warning: preprocess dropped 44% of 9 admissions (" in loud.output
    assert "no diagnosis codes 11%" in loud.output and "report.md lists every reason" in loud.output
