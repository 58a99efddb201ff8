"""Every shipped VERL preset on the GPUs it documents: batch arithmetic, memory plan, VERL's own validation."""

from __future__ import annotations

import dataclasses

import shlex

import pytest
from typer.testing import CliRunner

from deepicd.cli import app
from deepicd.errors import UserError
from deepicd.train import grpo_memory, grpo_verl
from deepicd.train.grpo_config import load_grpo_config, presets

GPUS_GB = {"H100": 80, "H200": 141, "B200": 180}
# The model each preset starts from when the preset leaves it to --init (an SFT model of that family).
INIT = {"sft-grpo-llama3.1-8b": "meta-llama/Llama-3.1-8B-Instruct", "sft-grpo-qwen2.5-7b": "Qwen/Qwen2.5-7B-Instruct"}
VERL_PRESETS = [name for name in presets() if load_grpo_config(name).backend == "verl"]


def test_every_verl_preset_is_in_the_matrix():
    assert set(VERL_PRESETS) == {"r1-zero-qwen2.5-32b", "sft-grpo-llama3.1-8b", "sft-grpo-qwen2.5-7b"}


def _run(name, gpu_gb, *overrides, tmp_path):
    return load_grpo_config(name, [f"verl.gpu_memory_gb={gpu_gb}", *overrides], model=INIT.get(name),
                           data=tmp_path / "data", out=tmp_path / "run")


@pytest.mark.parametrize("gpu", sorted(GPUS_GB))
@pytest.mark.parametrize("name", VERL_PRESETS)
def test_preset_fits_its_documented_node_and_verl_accepts_the_batches(name, gpu, tmp_path):
    run = _run(name, GPUS_GB[gpu], tmp_path=tmp_path)
    fitted = grpo_memory.fit(run)
    assert fitted.plan is not None and fitted.plan.fits(), fitted.plan.problems()
    dataclasses.replace(fitted.config)  # rebuilt, it checks itself: the batch arithmetic holds after auto_fit
    template = "{% for m in messages %}{{ m['content'] }}{% endfor %}{% if add_generation_prompt %}A:{% endif %}"
    argv = grpo_verl.command(fitted.config, chat_template=grpo_verl.prefill_template(template, "<think>"))
    composed = grpo_verl.compose_verl(grpo_verl.verl_overrides(argv))
    assert grpo_verl.check_engine_batches(composed) == ""
    assert composed.actor_rollout_ref.rollout.tensor_model_parallel_size == fitted.config.verl.tensor_parallel_size
    assert composed.trainer.n_gpus_per_node == run.verl.n_gpus_per_node
    # What auto_fit may change never changes the training math.
    for key in ("train_batch_size", "mini_batch_size", "num_generations", "learning_rate"):
        assert getattr(fitted.config.grpo, key) == getattr(run.grpo, key)
    assert fitted.config.verl.gpu_memory_utilization == run.verl.gpu_memory_utilization


@pytest.mark.parametrize("gpu_gb", [80, 141])
def test_the_published_32b_rollout_does_not_fit_at_tp1(gpu_gb, tmp_path):
    run = _run("r1-zero-qwen2.5-32b", gpu_gb, "verl.auto_fit=false", tmp_path=tmp_path)
    assert (run.verl.tensor_parallel_size, run.verl.gpu_memory_utilization) == (1, 0.4)  # the paper's values
    with pytest.raises(UserError) as refused:
        grpo_memory.fit(run)
    message = str(refused.value)
    assert "rollout at tensor parallel 1: weights 61.0" in message
    assert f"budget 0.4 x {gpu_gb} GB" in message and "Fix: verl.tensor_parallel_size=" in message


def test_the_suggested_fix_fits(tmp_path):
    run = _run("r1-zero-qwen2.5-32b", 80, "verl.auto_fit=false", tmp_path=tmp_path)
    with pytest.raises(UserError) as refused:
        grpo_memory.fit(run)
    fix = str(refused.value).split("Fix: ")[1].split(";")[0].rstrip(".").split()
    assert grpo_memory.fit(_run("r1-zero-qwen2.5-32b", 80, "verl.auto_fit=false", *fix, tmp_path=tmp_path)).plan.fits()


def test_auto_fit_picks_the_smallest_tensor_parallel_size_that_fits(tmp_path):
    fitted = grpo_memory.fit(_run("r1-zero-qwen2.5-32b", 141, tmp_path=tmp_path))
    assert fitted.config.verl.tensor_parallel_size == 2
    assert fitted.changes == ["verl.tensor_parallel_size: 1 -> 2"]
    # At TP 1 it would need GPUs of ~185 GB at utilization 0.4.
    fitted = grpo_memory.fit(_run("r1-zero-qwen2.5-32b", 200, tmp_path=tmp_path))
    assert fitted.changes == [] and fitted.config.verl.tensor_parallel_size == 1


def test_a_plan_nothing_can_fit_is_refused(tmp_path):
    run = _run("r1-zero-qwen2.5-32b", 24, tmp_path=tmp_path)
    with pytest.raises(UserError, match="does not fit in GPU memory.*(Fix|No single setting)"):
        grpo_memory.fit(run)


def test_unknown_gpu_or_model_is_a_note_not_a_plan(tmp_path):
    run = load_grpo_config("r1-zero-qwen2.5-32b", data=tmp_path, out=tmp_path)
    fitted = grpo_memory.fit(run)
    if fitted.plan is None:  # no GPU on this machine
        assert "verl.gpu_memory_gb" in fitted.note
    run = load_grpo_config("r1-zero-qwen2.5-32b", ["verl.gpu_memory_gb=80"], model=str(tmp_path / "absent"),
                          data=tmp_path, out=tmp_path)
    fitted = grpo_memory.fit(run)
    assert fitted.plan is None and "cannot size model" in fitted.note


def test_dry_run_on_a_login_node_prints_the_fitted_command_and_what_is_missing(tmp_path):
    args = ["train-grpo", "--config", "r1-zero-qwen2.5-32b", "--data", str(tmp_path / "data"), "--out",
            str(tmp_path / "run"), "--dry-run", "verl.gpu_memory_gb=80"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    [line] = result.stdout.strip().splitlines()
    argv = shlex.split(line)
    assert "actor_rollout_ref.rollout.tensor_model_parallel_size=4" in argv
    assert "actor_rollout_ref.actor.fsdp_config.optimizer_offload=True" in argv
    assert any("read from the model at launch" in arg for arg in argv)
    assert "auto_fit: verl.tensor_parallel_size: 1 -> 4" in result.stderr
    assert "note: model not available here" in result.stderr and "data file not found" in result.stderr
    assert not (tmp_path / "run").exists()


def test_dry_run_refuses_an_oversized_plan_without_auto_fit(tmp_path):
    args = ["train-grpo", "--config", "r1-zero-qwen2.5-32b", "--data", str(tmp_path), "--out", str(tmp_path / "run"),
            "--dry-run", "verl.gpu_memory_gb=80", "verl.auto_fit=false"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "does not fit in GPU memory" in result.stderr and "verl.tensor_parallel_size=4" in result.stderr


def _trl_run(tmp_path, model, *overrides):
    return load_grpo_config("tiny-cpu", ["grpo.max_prompt_length=2048", "grpo.max_completion_length=1024",
                                        "grpo.num_generations=8", "grpo.train_batch_size=4", "grpo.mini_batch_size=4",
                                        *overrides], model=model, data=tmp_path, out=tmp_path / "run")


def test_trl_plan_counts_colocated_vllm_against_the_policy(tmp_path):
    from deepicd.plan.shapes import model_shape

    run = _trl_run(tmp_path, "Qwen/Qwen2.5-7B-Instruct", "trl.per_device_batch_size=1")
    shape = model_shape(run.model)
    alone = grpo_memory.trl_plan(run, shape, 141, with_vllm=False, bf16=True)
    colocated = grpo_memory.trl_plan(run, shape, 141, with_vllm=True, bf16=True)
    assert alone.problems() == [] and colocated.rollout.budget_gib > 0
    # A 7B policy in bf16 with AdamW (8 bytes a parameter) and vLLM at 0.3 of an 80 GB card: too much.
    crowded = grpo_memory.trl_plan(run, shape, 80, with_vllm=True, bf16=True)
    assert any("plus vLLM's" in problem for problem in crowded.problems())


def test_trl_run_on_a_gpu_that_cannot_hold_it_is_refused_before_loading(tmp_path, monkeypatch):
    from deepicd.plan import memory

    monkeypatch.setattr(memory, "detect_gpu_memory_gb", lambda: 24.0)
    run = _trl_run(tmp_path, "Qwen/Qwen2.5-32B-Instruct")
    with pytest.raises(UserError, match="with the trl backend does not fit in GPU memory"):
        grpo_memory.check_trl(run, with_vllm=False, bf16=True)
    monkeypatch.setattr(memory, "detect_gpu_memory_gb", lambda: None)
    assert grpo_memory.check_trl(run, with_vllm=False, bf16=True) is None  # CPU: nothing to plan


def test_the_hardware_table_in_the_docs_is_the_planners(repo_root):
    text = (repo_root / "docs" / "training.md").read_text()
    documented = text.split("<!-- hardware-table:start -->\n")[1].split("\n<!-- hardware-table:end -->")[0]
    assert documented == grpo_memory.hardware_table(VERL_PRESETS_IN_DOC_ORDER)


VERL_PRESETS_IN_DOC_ORDER = ["r1-zero-qwen2.5-32b", "sft-grpo-qwen2.5-7b", "sft-grpo-llama3.1-8b"]
