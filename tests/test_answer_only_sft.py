"""`deepicd sft-data`: outcome-only SFT samples in the shape `deepicd sft` reads, and the Table 4 chain."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from deepicd.cli import app
from deepicd.prompts import code_only

runner = CliRunner()
CODES = ["I214", "J18.9", "K359", "N390", "I214", "C4A10", "E119", "I214"]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    pd.DataFrame(
        {
            "subject_id": [100 + i // 2 for i in range(len(CODES))],  # two admissions per patient
            "hadm_id": [5000 + i for i in range(len(CODES))],
            "text": [f"CHIEF COMPLAINT: complaint {i}\n\nPRESENT ILLNESS: history {i}" for i in range(len(CODES))],
            "first_code": CODES,
            "codes": [[code] for code in CODES],
        }
    ).to_parquet(folder / "train.parquet")
    return folder


def test_outcome_only_samples_hold_the_answer_alone(tmp_path, data_dir):
    out = tmp_path / "sft-outcome"
    result = runner.invoke(app, ["sft-data", "--data", str(data_dir), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "8 train / 0 val" in result.output
    train = pd.read_parquet(out / "sft" / "train.parquet")
    assert not (out / "sft" / "val.parquet").exists()  # no patients held out by default, as the paper's SFT
    assert list(train.columns) == ["prompt", "completion", "hadm_id", "subject_id", "code", "trace_words"]
    first = train.iloc[0]
    assert [m["role"] for m in first["prompt"]] == ["system", "user"]
    assert first["prompt"][0]["content"] == code_only.SYSTEM and "complaint 0" in first["prompt"][1]["content"]
    assert [dict(m) for m in first["completion"]] == [{"role": "assistant", "content": "<diagnosis>I214</diagnosis>"}]
    assert train["code"].tolist()[1] == "J189"  # normalised, as every other stage writes codes
    assert "<think>" not in "".join(m["content"] for row in train["completion"] for m in row)

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["prompts"] == {"code_only": code_only.VERSION, "target": "outcome-only"}
    stats = json.loads((out / "stats.json").read_text())
    assert stats["kept"] == 8 and stats["table2"]["unique_codes"] == 6
    assert {row["chapter"]: row["kept"] for row in stats["per_chapter"]}["09 IX (I00-I99)"] == 3

    # `deepicd sft` finds and reads the files.
    from deepicd.train.sft import data_files, load_table

    train_path, val_path = data_files(out)
    assert train_path == out / "sft" / "train.parquet" and val_path is None
    assert load_table(train_path).column_names == ["prompt", "completion"]


def test_validation_patients_are_held_out_whole(tmp_path, data_dir):
    out = tmp_path / "sft-outcome"
    result = runner.invoke(app, ["sft-data", "--data", str(data_dir), "--out", str(out), "--val-fraction", "0.3"])
    assert result.exit_code == 0, result.output
    train = pd.read_parquet(out / "sft" / "train.parquet")
    val = pd.read_parquet(out / "sft" / "val.parquet")
    assert len(train) + len(val) == len(CODES) and len(val) >= 2
    assert not set(train["subject_id"]) & set(val["subject_id"])
    # The same command does nothing; other settings need --overwrite.
    same = runner.invoke(app, ["sft-data", "--data", str(data_dir), "--out", str(out), "--val-fraction", "0.3"])
    assert same.exit_code == 0 and "already holds this run" in same.output
    other = runner.invoke(app, ["sft-data", "--data", str(data_dir), "--out", str(out)])
    assert other.exit_code == 2 and "other settings (val_fraction)" in other.output
    # A rebuild without validation patients leaves no stale val.parquet behind.
    assert runner.invoke(app, ["sft-data", "--data", str(data_dir), "--out", str(out), "--overwrite"]).exit_code == 0
    assert not (out / "sft" / "val.parquet").exists()


def test_like_a_distilled_set_keeps_its_notes_and_their_split(tmp_path, data_dir):
    distill = tmp_path / "distill" / "sft"
    distill.mkdir(parents=True)
    pd.DataFrame({"hadm_id": ["5000", "5001", "5004"], "prompt": [[]] * 3}).to_parquet(distill / "train.parquet")
    pd.DataFrame({"hadm_id": ["5006"], "prompt": [[]]}).to_parquet(distill / "val.parquet")
    out = tmp_path / "sft-outcome"
    result = runner.invoke(app, ["sft-data", "--data", str(data_dir), "--out", str(out), "--like", str(tmp_path / "distill")])
    assert result.exit_code == 0, result.output
    assert pd.read_parquet(out / "sft" / "train.parquet")["hadm_id"].tolist() == ["5000", "5001", "5004"]
    assert pd.read_parquet(out / "sft" / "val.parquet")["hadm_id"].tolist() == ["5006"]
    assert json.loads((out / "stats.json").read_text())["kept"] == 4

    pd.DataFrame({"hadm_id": ["9999"], "prompt": [[]]}).to_parquet(distill / "val.parquet")
    args = ["sft-data", "--data", str(data_dir), "--out", str(out), "--like", str(tmp_path / "distill")]
    changed = runner.invoke(app, args)
    assert changed.exit_code == 2 and "other settings (input like)" in changed.output.replace("\n", " ")
    refused = runner.invoke(app, [*args, "--overwrite"])
    assert refused.exit_code == 2 and "hadm_id 9999" in refused.output.replace("\n", " ")


def test_errors_name_the_file_or_setting(tmp_path, data_dir):
    missing = runner.invoke(app, ["sft-data", "--data", str(data_dir), "--split", "val", "--out", str(tmp_path / "o")])
    assert missing.exit_code == 2 and "val.parquet" in missing.output
    bad = runner.invoke(app, ["sft-data", "--data", str(data_dir), "--out", str(tmp_path / "o"), "--val-fraction", "1.5"])
    assert bad.exit_code == 2 and "val_fraction" in bad.output


def test_an_sft_model_of_outcome_only_data_is_an_outcome_only_row(tmp_path):
    from deepicd.evaluate import manifest as manifests

    model = tmp_path / "sft" / "model"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    # What `deepicd sft` writes beside the model: the data folder's prompts record, copied.
    (model.parent / "manifest.json").write_text(json.dumps({"stage": "sft", "prompts": {"code_only": "v", "target": "outcome-only"}}))
    assert manifests.model_target(model) == "outcome-only"
    (model.parent / "manifest.json").write_text(json.dumps({"stage": "sft", "prompts": {"oracle": "v", "task": "t"}}))
    assert manifests.model_target(model) == "reasoning+outcome"


@pytest.mark.slow
def test_sft_trains_on_outcome_only_data_and_evaluate_reads_it(tmp_path, data_dir, tiny_model):
    out = tmp_path / "sft-outcome"
    assert runner.invoke(app, ["sft-data", "--data", str(data_dir), "--out", str(out)]).exit_code == 0
    run = tmp_path / "run"
    trained = runner.invoke(app, ["sft", "--config", "tiny-cpu", "--data", str(out), "--model", str(tiny_model),
                                  "--out", str(run), "max_steps=2", "cpu_threads=1"])
    assert trained.exit_code == 0, trained.output
    assert json.loads((run / "manifest.json").read_text())["prompts"]["target"] == "outcome-only"
    for name in ("val.parquet", "test.parquet"):
        (data_dir / name).write_bytes((data_dir / "train.parquet").read_bytes())
    evaluation = tmp_path / "eval"
    scored = runner.invoke(app, ["evaluate", "--model", str(run / "model"), "--data", str(data_dir), "--out", str(evaluation),
                                 "--code-only", "--limit", "3", "sampling.max_new_tokens=8", "generator.device=cpu",
                                 "bootstrap.samples=0", "plots=false", "--stage", "sft"])
    assert scored.exit_code == 0, scored.output
    manifest = json.loads((evaluation / "manifest.json").read_text())
    assert manifest["prompts"] == {"evaluation": code_only.VERSION, "target": "outcome-only"}
    assert manifest["config"]["prompt"] == "code-only"


def test_code_only_prompt_shows_no_real_code_and_parses_its_own_layout():
    import re

    text = code_only.SYSTEM + code_only.USER
    assert not re.search(r"\b[A-Z][0-9]{2}", text)  # an untrained model would copy an example code
    assert "<diagnosis>CODE</diagnosis>" in text and "{note}" in code_only.USER
    assert code_only.parse(code_only.completion("J18.9")) == "J189"
    assert code_only.parse("The code is I21.4, an NSTEMI.") == "I214"  # no block: the first code in the text
    assert code_only.parse("<diagnosis>I214") == "I214"  # an unclosed block falls back to the text
    assert code_only.parse("pneumonia") is None
