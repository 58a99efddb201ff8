"""SFT on the tiny model teaches it the answer format; runs resume; errors name what is wrong."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest
from sft_kit import admissions, format_rate
from typer.testing import CliRunner

from deepicd.cli import app
from deepicd.errors import UserError
from deepicd.manifest import KEYS
from deepicd.train import checkpoints, sft

# Few steps, a high learning rate, one thread: two cores learn the format in 1.5-3 minutes (more when shared).
# With the task-v2 prompt (about 350 tiny-model tokens) 70 steps left 3 of 20 answers malformed; 90 none.
FAST = ["max_steps=90", "learning_rate=3e-3", "warmup_steps=5", "save_steps=45", "cpu_threads=1"]


@pytest.fixture
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
def test_sft_teaches_the_tiny_model_the_answer_format_and_resumes(tiny_model, distilled, tmp_path, one_thread):
    held_out = admissions(20, 5000)["text"].tolist()  # patients never seen in training
    before, _ = format_rate(tiny_model, held_out)
    assert before <= 0.1

    out = tmp_path / "sft"
    paths = {"data": str(distilled), "model": str(tiny_model), "out": str(out)}
    settings = dataclasses.replace(sft.load_sft_config("tiny-cpu", FAST), **paths)
    result = sft.run(settings)
    assert result.steps == 90 and result.dropped_too_long == 0 and result.truncated == 0
    assert result.eval_loss is not None and result.eval_loss < 1.0

    after, texts = format_rate(out / "model", held_out)
    assert after >= 0.9, texts

    manifest = json.loads((out / "manifest.json").read_text())
    assert tuple(manifest) == KEYS and (manifest["stage"], manifest["method"], manifest["seed"]) == ("sft", "sft", 42)
    assert manifest["config"]["max_steps"] == 90 and manifest["result"]["gradient_accumulation_steps"] == 1
    assert manifest["inputs"]["train"]["path"] == str(distilled / "sft" / "train.parquet")
    assert manifest["inputs"]["val"]["sha256"] and manifest["inputs"]["model"]["kind"] == "folder"
    assert manifest["outputs"]["model/model.safetensors"]["bytes"] > 0
    assert manifest["prompts"]["oracle"] == "oracle-v1" and "trl" in manifest["versions"]
    assert (out / "model" / "tokenizer.json").is_file() and (out / "model" / "config.json").is_file()
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints", "manifest.json", "model"]  # no temporary left
    assert checkpoints.last_complete(out / "checkpoints").name == "checkpoint-90"
    logged = [entry["loss"] for entry in json.loads((out / "checkpoints" / "checkpoint-90" / "trainer_state.json")
                                                    .read_text())["log_history"] if "loss" in entry]
    assert result.train_loss == pytest.approx(sum(logged) / len(logged))  # each logged loss covers 20 steps

    # The same command again: the run is over, so nothing is trained and the recorded result comes back.
    weights = (out / "model" / "model.safetensors").read_bytes()
    again = sft.run(settings)
    assert again.already_done and (again.steps, again.train_loss) == (90, result.train_loss)
    assert (out / "model" / "model.safetensors").read_bytes() == weights
    assert checkpoints.last_complete(out / "checkpoints").name == "checkpoint-90"
    with pytest.raises(UserError, match="other settings.*learning_rate"):
        sft.run(dataclasses.replace(settings, learning_rate=1e-3))

    # The same command with a longer budget continues from checkpoint-90 instead of starting over.
    longer = dataclasses.replace(sft.load_sft_config("tiny-cpu", [*FAST, "max_steps=94"]), **paths)
    resumed = sft.run(longer)
    assert resumed.steps == 94 and resumed.resumed_from == str(out / "checkpoints" / "checkpoint-90")
    # The whole run's mean loss, not this process's 4 steps divided by 94 (what the trainer reports).
    assert abs(resumed.train_loss - result.train_loss) < 0.2
    assert result.resumed_from is None
    assert json.loads((out / "manifest.json").read_text())["result"]["resumed_from"].endswith("checkpoint-90")


@pytest.mark.slow
def test_a_failed_final_save_leaves_no_model_and_no_temporary(tiny_model, distilled, tmp_path, monkeypatch,
                                                              one_thread, dead_pid):
    from trl import SFTTrainer

    out = tmp_path / "sft"
    stale = out / f".model.tmp-{dead_pid}-x"  # what a run killed while saving leaves
    stale.mkdir(parents=True)
    (stale / "model.safetensors").write_text("half of a model")

    checkpoint_save = SFTTrainer.save_model

    def disk_full(self, output_dir=None, _internal_call=False):
        if _internal_call:  # the trainer's own checkpoints are saved as usual; the final save fails
            return checkpoint_save(self, output_dir, _internal_call)
        (Path(output_dir) / "model.safetensors").write_text("half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(SFTTrainer, "save_model", disk_full)
    paths = {"data": str(distilled), "model": str(tiny_model), "out": str(out)}
    settings = dataclasses.replace(sft.load_sft_config("tiny-cpu",
                                                      ["max_steps=2", "save_steps=2", "cpu_threads=1"]), **paths)
    with pytest.raises(OSError, match="No space left"):
        sft.run(settings)
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints"]  # neither model/ nor a temporary
    with pytest.raises(UserError, match="stopped while saving its model"):
        sft.run(settings)


def test_incomplete_checkpoints_are_skipped(tmp_path):
    for step, whole in ((5, True), (10, True), (15, False)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if whole:
            (folder / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-x").mkdir()
    assert checkpoints.last_complete(tmp_path).name == "checkpoint-10"
    assert checkpoints.last_complete(tmp_path / "absent") is None


def test_effective_batch_is_kept_across_gpu_counts():
    settings = sft.load_sft_config("qwen2.5-7b")
    assert [sft.accumulation_steps(settings, n) for n in (1, 2, 4, 8)] == [8, 4, 2, 1]
    with pytest.raises(UserError, match="32 is not a multiple of per_device_batch_size x processes = 4 x 16"):
        sft.accumulation_steps(settings, 16)


def test_paper_presets_follow_the_paper():
    for name in ("qwen2.5-7b", "llama3.1-8b"):
        c = sft.load_sft_config(name)
        assert (c.epochs, c.batch_size, c.learning_rate, c.lr_scheduler) == (1.0, 32, 2e-5, "cosine")
        assert (c.warmup_steps, c.weight_decay, c.precision, c.gradient_checkpointing) == (100, 0.01, "bf16-mixed", True)
        assert c.optimizer.startswith("adamw")


def test_sft_config_uses_trl_field_names(tmp_path):
    settings = sft.load_sft_config("tiny-cpu", ["packing=true"])
    args = sft.build_sft_config(settings, tmp_path, processes=1, has_eval=True)
    assert args.completion_only_loss is True and args.assistant_only_loss is False
    assert args.use_cpu and not args.bf16 and args.packing and args.max_length == settings.max_length
    assert args.gradient_accumulation_steps == 1 and args.eval_strategy == "no"


def test_every_sft_setting_reaches_trl_or_is_deepicds_own(tmp_path):
    groups = [sft.TRL_SAME_NAME, tuple(sft.TRL_RENAMED), sft.TRL_DERIVED, sft.DEEPICD_ONLY]
    grouped = [name for group in groups for name in group]
    fields = [f.name for f in dataclasses.fields(sft.SFTRunConfig)]
    assert sorted(grouped) == sorted(fields)  # a new setting must say how it reaches TRL; none is listed twice

    # Values no preset uses, so a setting that is dropped on the way shows as TRL's default.
    given = {"seed": 7, "max_steps": 13, "learning_rate": 3e-4, "warmup_steps": 3, "weight_decay": 0.05,
             "max_grad_norm": 0.5, "packing": True, "padding_free": True, "logging_steps": 3, "save_steps": 11,
             "save_total_limit": 4, "dataset_num_proc": 2, "dataloader_num_workers": 1, "epochs": 2.5,
             "per_device_batch_size": 2, "lr_scheduler": "linear", "optimizer": "adafactor"}
    assert set(given) == set(sft.TRL_SAME_NAME) | set(sft.TRL_RENAMED)
    settings = sft.load_sft_config("tiny-cpu", [f"{k}={v}" for k, v in given.items()])
    args = sft.build_sft_config(settings, tmp_path, processes=1, has_eval=False)
    for name, value in given.items():
        held = getattr(args, sft.TRL_RENAMED.get(name, name))
        assert str(held) == str(value) or held == value, name  # TRL keeps its choices as enums


def test_fsdp_activation_checkpointing_replaces_the_trainers(tmp_path, monkeypatch):
    settings = sft.load_sft_config("tiny-cpu", ["gradient_checkpointing=true"])
    assert sft.build_sft_config(settings, tmp_path, 1, False).gradient_checkpointing
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setenv("FSDP_ACTIVATION_CHECKPOINTING", "true")
    assert not sft.build_sft_config(settings, tmp_path, 1, False).gradient_checkpointing


# Llama 3.1's chat layout (header tokens, a dated system block), written out for the tiny tokenizer.
LLAMA31_LIKE = (
    "{{- '<|begin_of_text|>' -}}"
    "{%- for message in messages -%}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' -}}"
    "{%- if message['role'] == 'system' -%}"
    "{{- 'Cutting Knowledge Date: December 2023\\nToday Date: 26 Jul 2024\\n\\n' -}}{%- endif -%}"
    "{{- message['content'] + '<|eot_id|>' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}{%- endif -%}"
)
# A template that renders the prompt differently once a reply follows: completion-only loss would be wrong.
SHIFTING = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}{{- 'A: ' + message['content'] -}}"
    "{%- else -%}{{- message['content'] + '\\n' -}}{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- 'Answer: ' -}}{%- endif -%}"
)


def test_prompt_is_a_token_prefix_for_chatml_and_llama31_layouts(tiny_model, distilled):
    from deepicd import models

    example = pd.read_parquet(distilled / "sft" / "train.parquet").iloc[0]
    example = {"prompt": list(example["prompt"]), "completion": list(example["completion"])}
    tokenizer = models.load_tokenizer(tiny_model, purpose="train")
    for template in (None, LLAMA31_LIKE):
        if template:
            tokenizer.chat_template = template
        sft.check_template(tokenizer, example)
        prompt = tokenizer.apply_chat_template(example["prompt"], tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(example["prompt"] + example["completion"], tokenize=False)
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        full_ids = tokenizer(full, add_special_tokens=False)["input_ids"]
        assert full_ids[: len(prompt_ids)] == prompt_ids  # the mask boundary falls on a token boundary
        completion = tokenizer.decode(full_ids[len(prompt_ids):])
        assert completion.startswith("<think>") and "<diagnosis>" in completion
    tokenizer.chat_template = SHIFTING
    with pytest.raises(UserError, match="prefix"):
        sft.check_template(tokenizer, example)


def test_data_without_a_completion_column_is_named(tmp_path, tiny_model):
    folder = tmp_path / "data"
    folder.mkdir()
    pd.DataFrame({"prompt": [[{"role": "user", "content": "x"}]], "answer": ["y"]}).to_parquet(folder / "train.parquet")
    settings = sft.load_sft_config("tiny-cpu")
    with pytest.raises(UserError, match="lacks column\\(s\\) completion"):
        sft.run(dataclasses.replace(settings, data=str(folder), model=str(tiny_model), out=str(tmp_path / "out")))


def test_cli_bad_config_key_is_named(tmp_path, distilled):
    result = CliRunner().invoke(
        app, ["sft", "--config", "tiny-cpu", "--data", str(distilled), "--model", str(tmp_path), "--out", str(tmp_path / "o"), "learning_rat=1"]
    )
    assert result.exit_code == 2 and "learning_rat" in result.output


def test_cli_missing_data_folder_is_reported(tmp_path):
    result = CliRunner().invoke(
        app, ["sft", "--config", "tiny-cpu", "--data", str(tmp_path / "nowhere"), "--model", str(tmp_path), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2 and "data folder not found" in result.output


def test_cli_missing_model_is_reported(tmp_path, distilled):
    result = CliRunner().invoke(
        app, ["sft", "--config", "tiny-cpu", "--data", str(distilled), "--model", str(tmp_path / "no-model"), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2 and "no-model" in result.output
