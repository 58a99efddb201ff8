"""`deepicd format-data`: the answer format and the note's words, with codes that carry no information."""

from __future__ import annotations

from collections import Counter

import pandas as pd
from sft_kit import admissions
from typer.testing import CliRunner

from deepicd.cli import app
from deepicd.rewards.completion import parse_completion


def test_samples_are_well_formed_quote_the_note_and_answer_at_random(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    frame = admissions(300, 1000)
    frame.to_parquet(data / "train.parquet")
    result = CliRunner().invoke(app, ["format-data", "--data", str(data), "--out", str(tmp_path / "fmt"), "--max-words", "6"])
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(tmp_path / "fmt" / "sft" / "train.parquet")
    assert len(table) == 300 and not (tmp_path / "fmt" / "sft" / "val.parquet").exists()
    gold = dict(zip(frame["hadm_id"].astype(str), frame["first_code"]))
    notes = dict(zip(frame["hadm_id"].astype(str), frame["text"]))
    for row in table.itertuples(index=False):
        parsed = parse_completion(row.completion[0]["content"], prefill="")
        complaint = notes[row.hadm_id].split("\n")[0].removeprefix("CHIEF COMPLAINT: ")
        # The trace restates the note's chief complaint, cut to --max-words.
        assert parsed.prediction == row.code and parsed.trace == " " + " ".join(
            f"The patient presents with {complaint}".split()[:6]).rstrip(".,;:") + ". "
        assert 5 <= row.trace_words <= 6 and row.prompt[-1]["role"] == "user"
    # The answers follow the split's code frequencies but are independent of the note's own code.
    assert Counter(table["code"]).keys() == Counter(frame["first_code"]).keys()
    agree = sum(row.code == gold[row.hadm_id] for row in table.itertuples(index=False)) / len(table)
    assert agree < 0.35  # six equally frequent codes: chance is 1/6, learning from this set cannot beat it
    # Without a chief complaint, a sentence of the note stands in.
    from deepicd.train.format_data import trace
    import random
    assert trace("PRESENT ILLNESS: pain in the left knee for days.", random.Random(0), 4) == " pain in the left. "
    again = CliRunner().invoke(app, ["format-data", "--data", str(data), "--out", str(tmp_path / "again"), "--max-words", "6"])
    assert again.exit_code == 0 and pd.read_parquet(tmp_path / "again" / "sft" / "train.parquet").equals(table)
