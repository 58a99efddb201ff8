"""What reaches the trainer: long samples dropped or cut (`overlong`), and runs without a validation set."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pandas as pd
import pytest
from sft_kit import TraceTeacher, admissions
from split_writer import write_split

from deepicd import models
from deepicd.errors import UserError
from deepicd.distill import run as distill
from deepicd.train import sft


def _lengths(tokenizer, frame: pd.DataFrame) -> tuple[list[int], list[int]]:
    """Token lengths of each templated sample and of its templated prompt, measured here independently."""
    full, prompt = [], []
    for row in frame.itertuples(index=False):
        messages, completion = list(row.prompt), list(row.completion)
        text = tokenizer.apply_chat_template(messages + completion, tokenize=False)
        head = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        full.append(len(tokenizer(text, add_special_tokens=False)["input_ids"]))
        prompt.append(len(tokenizer(head, add_special_tokens=False)["input_ids"]))
    return full, prompt


def _sample_ids(tokenizer, frame: pd.DataFrame) -> list[list[int]]:
    """The token ids of each templated sample (prompt + completion)."""
    texts = [tokenizer.apply_chat_template(list(row.prompt) + list(row.completion), tokenize=False)
             for row in frame.itertuples(index=False)]
    return [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]


@pytest.fixture(scope="module")
def measured(tiny_model, distilled):
    """(tokenizer, train table, sample lengths, prompt lengths) of the distilled SFT set."""
    tokenizer = models.load_tokenizer(tiny_model, purpose="train")
    frame = pd.read_parquet(distilled / "sft" / "train.parquet")
    full, prompt = _lengths(tokenizer, frame)
    assert len(set(full)) > 1, "the fixture's samples must differ in length for these tests"
    return tokenizer, frame, full, prompt


def _config(*overrides: str) -> sft.SFTRunConfig:
    return sft.load_sft_config("tiny-cpu", list(overrides))


def test_drop_leaves_out_samples_longer_than_max_length(measured, distilled):
    tokenizer, frame, full, _ = measured
    limit = sorted(full)[len(full) // 2]  # about half the samples are longer
    train, _, report = sft.prepare_datasets(
        distilled / "sft" / "train.parquet", None, tokenizer, _config(f"max_length={limit}", "overlong=drop")
    )
    longer = sum(n > limit for n in full)
    assert longer > 0 and report == sft.LengthReport(dropped=longer, truncated=0)
    assert len(train) == len(frame) - longer
    assert max(_lengths(tokenizer, train.to_pandas())[0]) <= limit


def test_truncate_keeps_long_samples_for_trl_to_cut(measured, distilled):
    tokenizer, frame, full, prompt = measured
    limit = sorted(full)[len(full) // 2]
    assert max(prompt) < limit  # every prompt leaves room for part of its completion
    train, _, report = sft.prepare_datasets(
        distilled / "sft" / "train.parquet", None, tokenizer, _config(f"max_length={limit}", "overlong=truncate")
    )
    assert len(train) == len(frame)
    assert report == sft.LengthReport(dropped=0, truncated=sum(n > limit for n in full))
    assert report.truncated > 0


def test_truncate_drops_samples_whose_prompt_alone_fills_max_length(measured, distilled):
    tokenizer, frame, _, prompt = measured
    limit = sorted(prompt)[len(prompt) // 2]
    assert min(prompt) < limit <= max(prompt)
    train, _, report = sft.prepare_datasets(
        distilled / "sft" / "train.parquet", None, tokenizer, _config(f"max_length={limit}", "overlong=truncate")
    )
    no_room = sum(n >= limit for n in prompt)
    assert report == sft.LengthReport(dropped=no_room, truncated=len(frame) - no_room)
    assert len(train) == len(frame) - no_room


def test_no_sample_fitting_is_an_error_naming_max_length(measured, distilled):
    tokenizer, _, _, prompt = measured
    for rule in ("drop", "truncate"):
        with pytest.raises(UserError, match=rf"fits max_length={min(prompt)} tokens \(overlong={rule}\)"):
            sft.prepare_datasets(
                distilled / "sft" / "train.parquet", None, tokenizer, _config(f"max_length={min(prompt)}", f"overlong={rule}")
            )


@pytest.mark.parametrize("rule", ["drop", "truncate"])
def test_trl_rows_never_exceed_max_length_and_truncated_ones_keep_their_start(measured, distilled, tiny_model, tmp_path, rule):
    from trl import SFTTrainer

    tokenizer, _, full, _ = measured
    limit = sorted(full)[len(full) // 2]
    config = _config(f"max_length={limit}", f"overlong={rule}", "dataset_num_proc=1")
    train, _, report = sft.prepare_datasets(distilled / "sft" / "train.parquet", None, tokenizer, config)
    args = sft.build_sft_config(config, tmp_path, processes=1, has_eval=False)
    trainer = SFTTrainer(model=str(tiny_model), args=args, train_dataset=train, processing_class=tokenizer)
    rows = trainer.train_dataset["input_ids"]
    samples = _sample_ids(tokenizer, train.to_pandas())
    assert len(rows) == len(samples) and max(len(ids) for ids in rows) <= limit
    assert rows == [ids[:limit] for ids in samples]  # each row is the start of its sample
    cut = [(row, ids) for row, ids in zip(rows, samples) if len(ids) > limit]
    assert len(cut) == report.truncated and bool(cut) == (rule == "truncate")
    # A cut row has lost the end of its trace and the answer: one </diagnosis> fewer than the sample
    # (the system prompt names the tag too).
    close = tokenizer.convert_tokens_to_ids("</diagnosis>")
    assert all(row.count(close) == ids.count(close) - 1 for row, ids in cut)


def test_overlong_is_checked_with_the_key_named():
    with pytest.raises(UserError, match="key 'overlong': 'cut'; expected one of drop, truncate"):
        _config("overlong=cut")
    with pytest.raises(UserError, match="key 'overlong': truncate needs packing=true when padding_free=true"):
        _config("overlong=truncate", "padding_free=true")
    assert _config("overlong=truncate", "padding_free=true", "packing=true").overlong == "truncate"


def test_padding_free_without_packing_gives_trl_no_length_to_enforce(tmp_path):
    # TRL refuses a max_length for padding-free rows it does not pack; with overlong=drop every row already fits.
    args = sft.build_sft_config(_config("padding_free=true"), tmp_path, processes=1, has_eval=False)
    assert args.padding_free and args.max_length is None
    args = sft.build_sft_config(_config("padding_free=true", "packing=true"), tmp_path, processes=1, has_eval=False)
    assert args.max_length == 1024


def test_paper_presets_drop_long_samples_and_hold_out_no_patients():
    for name in ("qwen2.5-7b", "llama3.1-8b"):
        preset = sft.load_sft_config(name)
        assert (preset.max_length, preset.overlong) == (4096, "drop")
    assert distill.load_distill_config("paper").val_fraction == 0.0
    assert distill.DistillConfig().val_fraction == 0.0


def test_without_a_validation_set_sft_trains_and_never_evaluates(tiny_model, tmp_path):
    root = tmp_path
    (root / "data").mkdir()
    write_split(root / "data", "train", admissions(16, 3000))
    settings = distill.load_distill_config(
        "tiny-cpu", ["generator.model=scripted-teacher", "filters.min_words=5", "val_fraction=0"]
    )
    result = distill.run(dataclasses.replace(settings, data=str(root / "data"), split="train", out=str(root / "distill")), make_generator=TraceTeacher)
    assert result.stats["sft_val"] == 0 and result.stats["sft_train"] == 16
    assert not (root / "distill" / "sft" / "val.parquet").exists()
    assert "no patients held out" in (root / "distill" / "report.md").read_text()

    config = sft.load_sft_config("tiny-cpu", ["max_steps=2", "eval_steps=1", "cpu_threads=1"])
    out = root / "sft"
    config = dataclasses.replace(config, data=str(root / "distill"), model=str(tiny_model), out=str(out))
    assert sft.data_files(root / "distill") == (root / "distill" / "sft" / "train.parquet", None)
    assert sft.build_sft_config(config, root, processes=1, has_eval=False).eval_strategy == "no"
    trained = sft.run(config)
    assert trained.steps == 2 and trained.samples == 16 and trained.eval_loss is None
    manifest = json.loads((out / "manifest.json").read_text())
    assert list(manifest["inputs"]) == ["train", "model"]
    assert manifest["inputs"]["train"]["path"] == str(root / "distill" / "sft" / "train.parquet")
    assert manifest["result"]["eval_loss"] is None and manifest["config"]["overlong"] == "drop"
    # --overwrite starts over instead of returning the finished run.
    assert sft.run(config).already_done
    anew = sft.run(dataclasses.replace(config, overwrite=True))
    assert not anew.already_done and anew.resumed_from is None and anew.steps == 2
    with pytest.raises(UserError, match="is the input model"):
        sft.run(dataclasses.replace(config, model=str(out / "model")))


def test_an_empty_val_file_means_no_validation_set(measured, distilled, tmp_path):
    tokenizer, frame, _, _ = measured
    folder = tmp_path / "data"
    folder.mkdir()
    shutil.copy(distilled / "sft" / "train.parquet", folder / "train.parquet")
    write_split(folder, "val", frame.iloc[:0])
    train_path, val_path = sft.data_files(folder)
    assert val_path == folder / "val.parquet"
    train, val, _ = sft.prepare_datasets(train_path, val_path, tokenizer, _config())
    assert val is None and len(train) == len(frame)


def test_cli_says_how_many_samples_were_cut(measured, distilled, tiny_model, tmp_path):
    from typer.testing import CliRunner

    from deepicd.cli import app

    _, _, full, _ = measured
    limit = sorted(full)[len(full) // 2]
    cut = sum(n > limit for n in full)
    args = ["sft", "--config", "tiny-cpu", "--data", str(distilled), "--model", str(tiny_model), "--out", str(tmp_path / "o"),
            "max_steps=1", f"max_length={limit}", "overlong=truncate", "cpu_threads=1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"trained 1 steps on {len(full)} samples ({cut} cut to max_length={limit}, 0 dropped" in result.output
