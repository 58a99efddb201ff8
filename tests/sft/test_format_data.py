"""`deepicd format-data`: the answer format, the note's words and body system, and answers from another chapter."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from split_writer import write_split
from sft_kit import admissions
from typer.testing import CliRunner

from deepicd.cli import app
from deepicd.rewards.completion import parse_completion


def test_samples_name_the_body_system_and_answer_from_another_chapter(tmp_path):
    from deepicd import icd
    from deepicd.train.format_data import CHAPTER_SYSTEMS

    data = tmp_path / "data"
    data.mkdir()
    frame = admissions(300, 1000)
    write_split(data, "train", frame)
    result = CliRunner().invoke(app, ["format-data", "--data", str(data), "--out", str(tmp_path / "fmt"), "--max-words", "6",
                                      "--random-share", "0"])
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(tmp_path / "fmt" / "sft" / "train.parquet")
    assert len(table) == 300 and not (tmp_path / "fmt" / "sft" / "val.parquet").exists()
    gold = dict(zip(frame["hadm_id"].astype(str), frame["first_code"]))
    notes = dict(zip(frame["hadm_id"].astype(str), frame["text"]))
    chapter_map = {}
    for row in table.itertuples(index=False):
        parsed = parse_completion(row.completion[0]["content"], prefill="")
        complaint = notes[row.hadm_id].split("\n")[0].removeprefix("CHIEF COMPLAINT: ")
        own, answered = icd.chapter(gold[row.hadm_id]).number, icd.chapter(row.code).number
        # The trace restates the chief complaint, cut to --max-words, and names the note's own body system.
        opening = " ".join(f"The patient presents with {complaint}".split()[:6]).rstrip(".,;:")
        assert parsed.prediction == row.code and parsed.trace == f" {opening}, which points to {CHAPTER_SYSTEMS[own]}. "
        assert row.prompt[-1]["role"] == "user"
        # The answer is a code of the split from another chapter, the same other chapter for every note of one.
        assert answered != own and row.code in set(frame["first_code"])
        assert chapter_map.setdefault(own, answered) == answered
    assert sorted(chapter_map) == sorted(chapter_map.values())  # a shuffle of the chapters present
    manifest = json.loads((tmp_path / "fmt" / "manifest.json").read_text())
    assert manifest["prompts"]["answers"] == "shuffled-chapters" and len(manifest["result"]["chapter_map"]) == len(chapter_map)
    # Without a chief complaint, a sentence of the note stands in.
    from deepicd.train.format_data import trace
    import random
    assert trace("PRESENT ILLNESS: pain in the left knee for days.", "M5116", random.Random(0), 4) == (
        " pain in the left, which points to a musculoskeletal disease. ")
    again = CliRunner().invoke(app, ["format-data", "--data", str(data), "--out", str(tmp_path / "again"), "--max-words", "6",
                                     "--random-share", "0"])
    assert again.exit_code == 0 and pd.read_parquet(tmp_path / "again" / "sft" / "train.parquet").equals(table)
    # The same command into the same folder does nothing; other settings there need --overwrite.
    args = ["format-data", "--data", str(data), "--out", str(tmp_path / "again"), "--max-words", "6"]
    same = CliRunner().invoke(app, [*args, "--random-share", "0"])
    assert same.exit_code == 0 and "already holds this run" in same.output and "300 format-only samples" in same.output
    other = CliRunner().invoke(app, [*args, "--random-share", "0.5"])
    assert other.exit_code == 2 and "other settings (random_share)" in other.output
    assert pd.read_parquet(tmp_path / "again" / "sft" / "train.parquet").equals(table)
    replaced = CliRunner().invoke(app, [*args, "--random-share", "0.5", "--overwrite"])
    assert replaced.exit_code == 0 and not pd.read_parquet(tmp_path / "again" / "sft" / "train.parquet").equals(table)


def test_a_random_share_of_answers_comes_from_the_whole_split(tmp_path):
    from deepicd import icd

    data = tmp_path / "data"
    data.mkdir()
    frame = admissions(600, 1000)
    write_split(data, "train", frame)
    result = CliRunner().invoke(app, ["format-data", "--data", str(data), "--out", str(tmp_path / "fmt"), "--random-share", "0.3"])
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(tmp_path / "fmt" / "sft" / "train.parquet")
    gold = dict(zip(frame["hadm_id"].astype(str), frame["first_code"]))
    # Six chapters of equal size: a random answer is in the note's own chapter 1 time in 6.
    own = sum(icd.chapter(row.code).number == icd.chapter(gold[row.hadm_id]).number for row in table.itertuples())
    assert 0.02 < own / len(table) < 0.09


def test_one_chapter_cannot_be_answered_from_another(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    write_split(data, "train", admissions(12, 1000).assign(first_code="I214"))
    result = CliRunner().invoke(app, ["format-data", "--data", str(data), "--out", str(tmp_path / "fmt")])
    assert result.exit_code == 2 and "at least two ICD-10-CM chapters" in result.output
    assert not (tmp_path / "fmt").exists()


def test_the_folders_are_required_when_the_stage_runs(tmp_path):
    from deepicd.errors import ConfigError
    from deepicd.train import format_data

    with pytest.raises(ConfigError, match="key 'out': is required \\(--out\\)"):
        format_data.run(format_data.FormatDataConfig(data=str(tmp_path)))
