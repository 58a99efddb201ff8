"""The distill stage end to end with an in-process teacher: outputs, filters, stats, resume, errors."""

from __future__ import annotations

import dataclasses
import json

import pandas as pd
import pytest
from distill_fakes import InProcessTeacher
from split_writer import write_split

from deepicd.errors import UserError
from deepicd.distill import run as distill
from deepicd.manifest import KEYS
from deepicd.distill.store import TraceStore, read_rows
from deepicd.prompts import task
from deepicd.rewards.completion import parse_completion


def _config(data, out, *overrides: str, split: str = "train", overwrite: bool = False) -> distill.DistillConfig:
    """The tiny-cpu preset with the fake teacher, distilling DATA's SPLIT into OUT."""
    settings = distill.load_distill_config(
        "tiny-cpu", ["generator.model=fake-teacher", "filters.min_words=10", "filters.repair_answer=false", *overrides]
    )
    return dataclasses.replace(settings, data=str(data), split=split, out=str(out), overwrite=overwrite)


def _teacher_factory(made: list):
    def make(generator_config):
        teacher = InProcessTeacher(generator_config)
        made.append(teacher)
        return teacher

    return make


def test_outputs_are_prompt_completion_pairs_on_the_task_prompt(make_data, tmp_path):
    data = make_data(24)
    out = tmp_path / "out"
    made: list = []
    result = distill.run(_config(data, out, "val_fraction=0.2"), make_generator=_teacher_factory(made))

    assert made[0].closed
    assert result.generated_now == 24 and result.errors_now == 0
    source = pd.read_parquet(data / "train.parquet")
    notes = dict(zip(source["hadm_id"].astype(str), source["text"]))
    golds = dict(zip(source["hadm_id"].astype(str), source["first_code"]))
    train = pd.read_parquet(out / "sft" / "train.parquet")
    val = pd.read_parquet(out / "sft" / "val.parquet")
    assert len(train) + len(val) == 24 and len(val) > 0
    # Held out by patient: no subject in both.
    assert not set(train["subject_id"]) & set(val["subject_id"])
    for row in pd.concat([train, val]).to_dict("records"):
        prompt = [dict(m) for m in row["prompt"]]
        assert prompt == task.messages(notes[row["hadm_id"]])  # the student's prompt, not the oracle's
        (completion,) = [dict(m) for m in row["completion"]]
        assert completion["role"] == "assistant"
        text = completion["content"]
        assert text.startswith(task.PREFILL)
        assert text.endswith(f"</think>\n<diagnosis>{golds[row['hadm_id']]}</diagnosis>")
        parsed = parse_completion(text[len(task.PREFILL):])
        assert parsed.prediction == golds[row["hadm_id"]] and len(parsed.pairs) == 1

    stats = json.loads((out / "stats.json").read_text())
    assert stats["table2"]["samples"] == 24
    assert stats["table2"]["unique_codes"] == 7
    assert stats["table2"]["min_words"] <= stats["table2"]["mean_words"] <= stats["table2"]["max_words"]
    assert sum(row["kept"] for row in stats["per_chapter"]) == 24
    report = (out / "report.md").read_text()
    assert "Table 2" in report and "93,142" in report
    manifest = json.loads((out / "manifest.json").read_text())
    assert tuple(manifest) == KEYS and (manifest["stage"], manifest["seed"]) == ("distill", 42)
    assert manifest["prompts"]["oracle"] == "oracle-v1" and manifest["result"]["kept"] == 24
    assert len(manifest["inputs"]["train"]["sha256"]) == 64 and "traces.jsonl" in manifest["outputs"]


def test_val_fraction_zero_writes_no_val_file_and_removes_a_stale_one(make_data, tmp_path):
    data = make_data(24)
    out = tmp_path / "out"
    distill.run(_config(data, out, "val_fraction=0.2"), make_generator=_teacher_factory([]))
    assert (out / "sft" / "val.parquet").is_file()
    # Rebuilt without a held-out share: every sample trains, and the earlier val.parquet (whose patients
    # are now in train) must not be left for `deepicd sft` to evaluate on.
    result = distill.run(_config(data, out, "val_fraction=0"), make_generator=_teacher_factory([]))
    assert result.generated_now == 0 and (result.stats["sft_train"], result.stats["sft_val"]) == (24, 0)
    assert len(pd.read_parquet(out / "sft" / "train.parquet")) == 24
    assert not (out / "sft" / "val.parquet").exists()
    assert "sft/val.parquet" not in json.loads((out / "manifest.json").read_text())["outputs"]
    assert "All 24 samples are training samples" in (out / "report.md").read_text()


def test_filters_are_counted_per_reason_and_errors_are_retried(make_data, tmp_path):
    markers = {1: "zzwrong", 2: "zzearly", 3: "zzshort", 4: "zznopair", 5: "zzfail", 6: "zzfail"}
    data = make_data(12, markers=markers)
    out = tmp_path / "out"
    made: list = []
    first = distill.run(_config(data, out), make_generator=_teacher_factory(made))
    assert first.errors_now == 2 and first.generated_now == 10 and first.first_error == "teacher failed"
    rejected = first.stats["rejected"]
    assert rejected == {
        "no_pair": 1, "not_single_pair": 0, "empty_trace": 0, "invalid_code": 0,
        "wrong_code": 1, "early_mention": 1, "too_short": 1, "too_long": 0,
    }
    assert first.stats["kept"] == 6 and first.stats["missing"] == 2
    stored = {row["hadm_id"] for row in read_rows(out / "traces.jsonl")}
    assert str(20000000 + 5) not in stored and str(20000000 + 6) not in stored  # errors are not written

    # The rerun asks the teacher for the two failed admissions only.
    second = distill.run(_config(data, out), make_generator=_teacher_factory(made))
    assert sorted(made[1].seen) == [str(20000000 + 5), str(20000000 + 6)]
    assert second.errors_now == 2 and second.generated_now == 0

    # With nothing missing the teacher is not even started.
    fixed = pd.read_parquet(data / "train.parquet")
    fixed["text"] = fixed["text"].str.replace("zzfail", "", regex=False)
    write_split(data, "train", fixed)
    distill.run(_config(data, out), make_generator=_teacher_factory(made))
    count = len(made)
    distill.run(_config(data, out), make_generator=_teacher_factory(made))
    assert len(made) == count
    lines = (out / "traces.jsonl").read_text().splitlines()
    assert len(lines) == 12 and len({json.loads(line)["hadm_id"] for line in lines}) == 12


def test_several_samples_keep_the_first_that_passes(make_data, tmp_path):
    data = make_data(6)
    out = tmp_path / "out"
    result = distill.run(_config(data, out, "sampling.n=3"), make_generator=_teacher_factory([]))
    rows = list(read_rows(out / "traces.jsonl"))
    assert all(len(row["completions"]) == 3 for row in rows)
    assert result.stats["completions"] == 18 and result.stats["kept"] == 6
    train = pd.read_parquet(out / "sft" / "train.parquet")
    assert all("(sample 0)" in row[0]["content"] for row in train["completion"])


def test_limit_generates_only_that_many(make_data, tmp_path):
    data = make_data(10)
    result = distill.run(_config(data, tmp_path / "out", "limit=4"), make_generator=_teacher_factory([]))
    assert result.generated_now == 4 and result.stats["missing"] == 6


def test_prompts_reach_the_backend_in_chunks(make_data, tmp_path):
    calls = []

    class Recording(InProcessTeacher):
        def generate(self, requests, sampling):
            calls.append(len(requests))
            yield from super().generate(requests, sampling)

    data = make_data(10)
    result = distill.run(_config(data, tmp_path / "out", "chunk_size=4"), make_generator=Recording)
    assert calls == [4, 4, 2] and result.generated_now == 10


def test_a_rerun_with_another_split_or_teacher_is_refused(make_data, tmp_path):
    data = make_data(4)
    split_table = pd.read_parquet(data / "train.parquet")
    write_split(data, "val", split_table)
    out = tmp_path / "out"
    distill.run(_config(data, out), make_generator=_teacher_factory([]))
    with pytest.raises(UserError, match="split='train'"):
        distill.run(_config(data, out, split="val"), make_generator=_teacher_factory([]))
    with pytest.raises(UserError, match="teacher='fake-teacher'.*--overwrite"):
        distill.run(_config(data, out, "generator.model=other"), make_generator=_teacher_factory([]))
    # A teacher that cannot start costs nothing, even with --overwrite.
    def broken(generator_config):
        raise UserError(f"model folder not found: {generator_config.model}")

    before = (out / "traces.jsonl").read_bytes()
    with pytest.raises(UserError, match="not found: fake-teacher"):
        distill.run(_config(data, out, split="val", overwrite=True), make_generator=broken)
    assert (out / "traces.jsonl").read_bytes() == before
    # Nor does one while another run writes there: the traces are emptied only under their lock.
    with TraceStore(out / "traces.jsonl"):
        with pytest.raises(UserError, match="another run is writing"):
            distill.run(_config(data, out, split="val", overwrite=True), make_generator=_teacher_factory([]))
    assert (out / "traces.jsonl").read_bytes() == before and (out / "run.json").is_file()
    # --overwrite starts over: every trace is the new teacher's.
    anew = distill.run(_config(data, out, split="val", overwrite=True), make_generator=_teacher_factory([]))
    assert anew.generated_now == 4 and json.loads((out / "run.json").read_text())["split"] == "val"
    with pytest.raises(UserError, match="holds the input train"):
        distill.run(_config(out / "sft", out), make_generator=_teacher_factory([]))


def test_a_teacher_that_cannot_start_does_not_pin_the_folder(make_data, tmp_path):
    """A typo in --teacher fails the run; the corrected command then runs in the same folder."""
    data, out = make_data(4), tmp_path / "out"

    def typo(generator_config):
        raise UserError(f"model folder not found: {generator_config.model}")

    with pytest.raises(UserError, match="not found: fake-teachr"):
        distill.run(_config(data, out, "generator.model=fake-teachr"), make_generator=typo)
    assert not (out / "run.json").exists()
    fixed = distill.run(_config(data, out), make_generator=_teacher_factory([]))
    assert fixed.generated_now == 4
    assert json.loads((out / "run.json").read_text())["teacher"] == "fake-teacher"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda frame: frame.drop(columns=["first_code"]), "lacks column\\(s\\) first_code"),
        (lambda frame: pd.concat([frame, frame.head(1)]), "hadm_id has duplicates"),
        (lambda frame: frame.assign(first_code=[""] + list(frame["first_code"][1:])), "first_code is empty"),
        (lambda frame: frame.assign(first_code=["4019"] + list(frame["first_code"][1:])), "not a well-formed ICD-10-CM code"),
    ],
)
def test_bad_input_tables_are_named(make_data, tmp_path, change, message):
    data = make_data(4)
    write_split(data, "train", change(pd.read_parquet(data / "train.parquet")))
    with pytest.raises(UserError, match=message):
        distill.run(_config(data, tmp_path / "out"), make_generator=_teacher_factory([]))


def test_missing_split_file_lists_what_is_there(make_data, tmp_path):
    data = make_data(4)
    with pytest.raises(UserError, match=r"test\.parquet.*train\.parquet"):
        distill.run(_config(data, tmp_path / "out", split="test"), make_generator=_teacher_factory([]))


def test_guidelines_reach_the_oracle_prompt(make_data, tmp_path, guidelines_dir):
    data = make_data(2)
    captured = []

    class Capturing(InProcessTeacher):
        def generate(self, requests, sampling):
            for request in requests:
                captured.append(request)
                yield from super().generate([request], sampling)

    distill.run(_config(data, tmp_path / "out", f"guidelines_dir={guidelines_dir}"), make_generator=lambda c: Capturing(c))
    user = captured[0].messages[1]["content"]
    chapter_9 = json.loads((guidelines_dir / "chapter_9.json").read_text())
    first_heading = next(iter(next(iter(chapter_9.values()))))
    assert "I21.4" in user and first_heading in user
