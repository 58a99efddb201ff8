"""The single-device TRL backend: data rendering, the GRPOConfig mapping, and a real tiny CPU run."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from deepicd.cli import app
from deepicd.errors import UserError
from deepicd.manifest import KEYS
from deepicd.train import grpo_trl
from deepicd.train.data import read_examples
from deepicd.train.grpo_config import load_grpo_config


def _run(tmp_path, data_dir, tiny_model, overrides=()):
    return load_grpo_config("tiny-cpu", list(overrides), data=data_dir, out=tmp_path / "run",
                           model=str(tiny_model))


def test_verl_and_plain_tables_give_the_same_examples(data_dir):
    from_verl = read_examples(data_dir / "verl" / "train.parquet")
    plain = read_examples(data_dir / "train.parquet")
    assert from_verl == plain
    assert from_verl[7].gold == "C4A0" and from_verl[0].note.startswith("CHIEF COMPLAINT")


def test_dataset_rows_are_prompt_text_ending_in_the_prefill_with_gold_and_note(tmp_path, data_dir, tiny_model):
    from deepicd.models import load_tokenizer
    from deepicd.prompts import task

    tokenizer = load_tokenizer(tiny_model)
    dataset, path, dropped = grpo_trl.build_dataset(_run(tmp_path, data_dir, tiny_model), tokenizer, "<think>")
    assert path == data_dir / "verl" / "train.parquet" and dropped == 0
    assert dataset.column_names == ["prompt", "gold", "note", "hadm_id"]
    row = dataset[1]
    assert row["prompt"] == task.render(tokenizer, row["note"]) and row["prompt"].endswith("assistant\n<think>")
    assert row["gold"] == "M5116"


def test_overlong_prompts_are_dropped_and_all_too_long_is_an_error(tmp_path, data_dir, tiny_model):
    from deepicd.models import load_tokenizer
    from deepicd.prompts import task
    from grpo_fixtures import write_data

    tokenizer = load_tokenizer(tiny_model)
    lengths = [len(tokenizer(task.render(tokenizer, e.note))["input_ids"])
               for e in read_examples(data_dir / "train.parquet")]
    limit = min(lengths)
    longer = sum(length > limit for length in lengths)
    assert 0 < longer < len(lengths)  # notes "pain 10", "pain 11" take one token more than "pain 1"
    run = _run(tmp_path, data_dir, tiny_model, [f"grpo.max_prompt_length={limit}"])
    dataset, _, dropped = grpo_trl.build_dataset(run, tokenizer, "<think>")
    assert (dropped, len(dataset)) == (longer, len(lengths) - longer)
    long_data = write_data(tmp_path / "long", train=4, val=1, note_words=400)
    with pytest.raises(UserError, match="all 4 prompts are longer than grpo.max_prompt_length"):
        grpo_trl.build_dataset(_run(tmp_path, long_data, tiny_model, [f"grpo.max_prompt_length={limit}"]),
                               tokenizer, "<think>")


def test_grpo_config_maps_prompts_per_step_onto_trl_batches(tmp_path, data_dir, tiny_model):
    run = _run(tmp_path, data_dir, tiny_model, ["grpo.train_batch_size=4", "grpo.mini_batch_size=2",
                                                    "grpo.num_generations=4", "trl.per_device_batch_size=4"])
    args = grpo_trl.grpo_args(run, tmp_path / "ckpt", vllm=False)
    # 4 prompts x 4 completions per generation; an update every 2 prompts x 4 completions.
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps, args.steps_per_generation) == (4, 2, 4)
    assert args.generation_batch_size == 16 and args.num_generations == 4
    assert (args.beta, args.use_cpu, args.use_vllm, args.max_completion_length) == (0.0, True, False, 48)
    assert (args.temperature, args.learning_rate, args.max_steps, args.seed) == (1.0, 1e-4, 3, 42)
    assert args.scale_rewards == "group"  # the published GRPO: each group's standard deviation
    batch = grpo_trl.grpo_args(_run(tmp_path, data_dir, tiny_model, ["grpo.advantage_scale=batch"]), tmp_path, False)
    assert batch.scale_rewards == "batch"


def test_use_vllm_auto_is_off_without_a_gpu():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert grpo_trl.use_vllm("auto") is False
    with pytest.raises(UserError, match="trl.use_vllm=true"):
        grpo_trl.use_vllm("true")


@pytest.mark.slow
def test_tiny_cpu_preset_trains_saves_a_loadable_model_and_resumes(tmp_path, data_dir, tiny_model):
    import torch

    from deepicd.models import load

    threads = torch.get_num_threads()
    out = tmp_path / "run"
    args = ["train-grpo", "--config", "tiny-cpu", "--data", str(data_dir), "--model", str(tiny_model),
            "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "trained 3 steps" in result.output
    assert torch.get_num_threads() == threads  # trl.cpu_threads applies to the run only
    model, tokenizer = load(out / "model", device="cpu")
    assert model.config.vocab_size == len(tokenizer) and tokenizer.chat_template
    manifest = json.loads((out / "manifest.json").read_text())
    assert tuple(manifest) == KEYS
    assert (manifest["stage"], manifest["method"], manifest["seed"]) == ("train-grpo", "grpo", 42)
    assert manifest["result"]["backend"] == "trl"
    assert manifest["result"]["global_step"] == 3 and manifest["result"]["resumed_from"] is None
    assert len(manifest["inputs"]["train"]["sha256"]) == 64 and manifest["result"]["rows"] == 12
    assert {"torch", "transformers", "trl", "deepicd"} <= set(manifest["versions"])
    logs = manifest["result"]["last_logs"][-1]
    assert {"rewards/outcome/mean", "rewards/format/mean", "rewards/extra_pairs/mean", "rewards/empty/mean"} <= set(logs)
    # The whole reward history and its curves lie beside the model.
    curve = [json.loads(line) for line in (out / "reward_log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in curve] == [1, 2, 3] and {"reward", "outcome", "format"} <= set(curve[0])
    assert (out / "reward_curves.png").read_bytes()[:4] == b"\x89PNG"

    # The same command again: the run is over, so nothing is trained (before, each rerun trained a step more).
    weights = (out / "model" / "model.safetensors").read_bytes()
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "already holds this run, trained 3 steps" in again.output
    assert (out / "model" / "model.safetensors").read_bytes() == weights
    assert json.loads((out / "manifest.json").read_text())["result"]["global_step"] == 3
    other = CliRunner().invoke(app, args + ["grpo.learning_rate=0.5"])
    assert other.exit_code == 2 and "other settings (grpo)" in other.output and "--overwrite" in other.output
    anew = CliRunner().invoke(app, args + ["grpo.learning_rate=0.5", "--overwrite"])  # starts over
    assert anew.exit_code == 0 and "trained 3 steps" in anew.output and "resumed" not in anew.output
    assert json.loads((out / "manifest.json").read_text())["config"]["grpo"]["learning_rate"] == 0.5

    # Rerun with one more step: it continues from the last checkpoint instead of starting over.
    result = CliRunner().invoke(app, args + ["grpo.max_steps=4"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["result"]["global_step"] == 4
    assert manifest["result"]["resumed_from"].endswith("checkpoint-3")


def test_trl_backend_has_no_dry_run(tmp_path, data_dir, tiny_model):
    result = CliRunner().invoke(app, ["train-grpo", "--config", "tiny-cpu", "--data", str(data_dir), "--model",
                                      str(tiny_model), "--out", str(tmp_path), "--dry-run"])
    assert result.exit_code == 2 and "for the verl backend" in result.output


def test_missing_model_is_a_clear_error(tmp_path, data_dir):
    result = CliRunner().invoke(app, ["train-grpo", "--config", "tiny-cpu", "--data", str(data_dir),
                                      "--out", str(tmp_path)])
    assert result.exit_code == 2 and "is required (--model)" in result.output


def test_init_continues_from_an_sft_model_and_records_the_sft_grpo_stage(tmp_path, data_dir, tiny_model):
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train-grpo", "--config", "tiny-cpu", "--data", str(data_dir), "--init",
                                      str(tiny_model), "--out", str(out), "grpo.max_steps=1", "grpo.save_steps=1"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["stage"], manifest["method"]) == ("train-grpo", "sft-grpo")
    both = CliRunner().invoke(app, ["train-grpo", "--config", "tiny-cpu", "--data", str(data_dir), "--init",
                                    str(tiny_model), "--model", str(tiny_model), "--out", str(tmp_path / "x")])
    assert both.exit_code == 2 and "either --model or --init" in both.output
