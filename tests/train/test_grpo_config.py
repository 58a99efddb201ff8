"""Every shipped GRPO preset loads and validates; the paper presets hold the paper's settings."""

from __future__ import annotations

import pytest

from deepicd.errors import ConfigError
from deepicd.rewards.config import load_reward_config
from deepicd.train.grpo_config import load_grpo_config, presets


def test_the_four_presets_ship():
    assert {"r1-zero-qwen2.5-32b", "sft-grpo-qwen2.5-7b", "sft-grpo-llama3.1-8b", "tiny-cpu"} <= set(presets())


@pytest.mark.parametrize("name", presets())
def test_every_preset_loads_validates_and_says_how_to_run_it(name, repo_root):
    config = load_grpo_config(name)
    assert config.name == name
    load_reward_config(config.reward.preset, config.reward.overrides)  # the reward preset it names exists
    header = (repo_root / "src" / "deepicd" / "configs" / "grpo" / f"{name}.yaml").read_text().splitlines()
    comments = [line for line in header if line.startswith("#")]
    assert any(f"deepicd train-grpo --config {name}" in line for line in comments)


def test_r1_zero_preset_is_the_paper_run():
    config = load_grpo_config("r1-zero-qwen2.5-32b")
    g, v = config.grpo, config.verl
    assert (config.backend, config.stage, config.model) == ("verl", "grpo", "Qwen/Qwen2.5-32B-Instruct")
    assert (g.train_batch_size, g.mini_batch_size, g.num_generations) == (64, 64, 8)
    assert (g.temperature, g.learning_rate, g.warmup_steps, g.epochs) == (0.9, 1e-6, 80, 1)
    assert (g.max_prompt_length, g.max_completion_length) == (2048, 1024)
    assert (g.entropy_coef, g.kl_loss_coef, g.kl_in_reward) == (0.001, 0.0, False)
    assert (g.bf16, g.gradient_checkpointing, g.save_steps) == (True, True, 50)
    assert (v.nnodes, v.n_gpus_per_node, v.micro_batch_size_per_gpu) == (1, 8, 4)
    assert (v.rollout, v.tensor_parallel_size, v.gpu_memory_utilization, v.remove_padding) == ("vllm", 1, 0.4, True)
    assert config.reward.preset == "paper-judge"


@pytest.mark.parametrize("name", ["sft-grpo-llama3.1-8b", "sft-grpo-qwen2.5-7b"])
def test_sft_grpo_presets_use_four_gpus_and_micro_batch_16(name):
    config = load_grpo_config(name)
    reference = load_grpo_config("r1-zero-qwen2.5-32b")
    assert config.stage == "sft-grpo" and config.model == ""  # the SFT checkpoint comes from --init
    assert (config.verl.n_gpus_per_node, config.verl.micro_batch_size_per_gpu) == (4, 16)
    assert config.grpo == reference.grpo


def test_tiny_cpu_preset_is_a_short_trl_run():
    config = load_grpo_config("tiny-cpu")
    assert config.backend == "trl" and config.reward.preset == "paper"
    assert 0 < config.grpo.max_steps <= 4 and config.grpo.max_completion_length <= 64


def test_command_line_paths_and_backend_win_over_the_preset(tmp_path):
    config = load_grpo_config("r1-zero-qwen2.5-32b", ["grpo.max_steps=5"], model="/models/x",
                             data=tmp_path, out=tmp_path / "run", backend="trl")
    assert (config.model, config.data, config.backend, config.grpo.max_steps) == (
        "/models/x", str(tmp_path), "trl", 5)


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["backend=deepspeed"], "backend"),
        (["stage=dpo"], "stage"),
        (["grpo.mini_batch_size=48"], "grpo.mini_batch_size"),
        (["grpo.num_generations=1"], "grpo.num_generations"),
        (["verl.micro_batch_size_per_gpu=3"], "verl.micro_batch_size_per_gpu"),
        (["verl.rollout=hf"], "verl.rollout"),
        (["grpo.learning_rate=0"], "grpo.learning_rate"),
        (["grpo.nonsense=1"], "grpo.nonsense"),
        (["grpo.train_batch_size=many"], "grpo.train_batch_size"),
    ],
)
def test_bad_settings_are_refused_naming_the_key(overrides, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_grpo_config("r1-zero-qwen2.5-32b", overrides)


def test_trl_micro_batch_must_divide_the_completions_of_a_step():
    with pytest.raises(ConfigError, match="trl.per_device_batch_size"):
        load_grpo_config("tiny-cpu", ["trl.per_device_batch_size=3"])
