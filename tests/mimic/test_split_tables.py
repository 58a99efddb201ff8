"""The preprocess output's data contract: written with the declared schemas, and read by one function
that every later stage uses, so a damaged table is refused the same way everywhere."""

from __future__ import annotations

import pandas as pd
import pyarrow.parquet as pq
import pytest

from deepicd import split_tables
from deepicd.errors import UserError
from deepicd.split_tables import NOTES_SCHEMA, VERL_SCHEMA, read_notes


def test_preprocess_writes_the_declared_schemas(synth_out):
    for split in ("train", "val", "test"):
        assert pq.read_schema(split_tables.notes_path(synth_out, split)).remove_metadata() == NOTES_SCHEMA
        assert pq.read_schema(split_tables.verl_path(synth_out, split)).remove_metadata() == VERL_SCHEMA


def test_the_reader_keeps_file_order_and_reads_only_what_is_asked(synth_out):
    whole = pd.read_parquet(split_tables.notes_path(synth_out, "test"))
    keys = read_notes(synth_out, "test", columns=())
    assert list(keys.columns) == list(split_tables.KEY_COLUMNS)
    assert keys["hadm_id"].tolist() == whole["hadm_id"].tolist()
    assert len(read_notes(synth_out, "test", columns=(), limit=3)) == 3
    assert list(read_notes(synth_out, "test").columns) == NOTES_SCHEMA.names


def _damaged(synth_out, tmp_path, change) -> pd.DataFrame:
    folder = tmp_path / "data"
    folder.mkdir()
    change(pd.read_parquet(split_tables.notes_path(synth_out, "train"))).to_parquet(folder / "train.parquet")
    return folder


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: pd.concat([f, f.head(2)]), r"hadm_id has duplicates \(2\)"),
        (lambda f: f.assign(first_code=["4019"] + list(f["first_code"][1:])), "'4019' in row 0.*not a well-formed"),
        (lambda f: f.assign(first_code=[None] + list(f["first_code"][1:])), "first_code is empty in row 0"),
        (lambda f: f.drop(columns=["text"]), r"lacks column\(s\) text"),
        (lambda f: f.head(0), "holds no notes"),
    ],
)
def test_every_stage_refuses_a_damaged_table_with_the_same_line(synth_out, tmp_path, change, message):
    from deepicd.train.data import read_examples
    from deepicd.train import format_data

    folder = _damaged(synth_out, tmp_path, change)
    with pytest.raises(UserError, match=message):
        read_notes(folder, "train")
    with pytest.raises(UserError, match=message):  # the TRL backend's reader of a plain table
        read_examples(folder / "train.parquet")
    with pytest.raises(UserError, match=message):
        format_data.run(format_data.FormatDataConfig(data=str(folder), out=str(tmp_path / "out")))


def test_a_missing_split_names_the_files_that_are_there(synth_out):
    with pytest.raises(UserError, match=r"split 'dev' not found.*test\.parquet, train\.parquet, val\.parquet"):
        read_notes(synth_out, "dev")
    with pytest.raises(UserError, match="data folder not found"):
        read_notes(synth_out / "nowhere", "train")


def test_a_file_that_is_not_parquet_is_named(tmp_path):
    (tmp_path / "train.parquet").write_text("id,text\n")
    with pytest.raises(UserError, match="cannot read .*train.parquet as parquet"):
        read_notes(tmp_path, "train")
