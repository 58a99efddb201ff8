"""SFT presets split their batch on every documented GPU count, and the memory plan refuses what cannot fit."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from deepicd import config as configuration
from deepicd.cli import app
from deepicd.errors import UserError
from deepicd.plan.shapes import SHAPES_DIR
from deepicd.train import sft

# The GPU counts each shipped preset is documented for (preset header, docs/distill-sft.md).
DOCUMENTED_PROCESSES = {"qwen2.5-7b": (1, 2, 4, 8), "llama3.1-8b": (1, 2, 4, 8), "tiny-cpu": (1,)}
MODELS = {"qwen2.5-7b": "Qwen/Qwen2.5-7B-Instruct", "llama3.1-8b": "meta-llama/Llama-3.1-8B-Instruct"}
FSDP_ENV = ("ACCELERATE_USE_FSDP", "FSDP_OFFLOAD_PARAMS", "FSDP_ACTIVATION_CHECKPOINTING")


@pytest.fixture
def no_launcher(monkeypatch):
    """A process not started by `accelerate launch`, whatever the shell running the tests exported."""
    for name in FSDP_ENV:
        monkeypatch.delenv(name, raising=False)


def preset(name: str, *overrides: str) -> sft.SFTRunConfig:
    return sft.load_sft_config(name, list(overrides))


def test_every_preset_splits_its_batch_on_every_documented_gpu_count():
    assert set(DOCUMENTED_PROCESSES) == set(configuration.available_presets("sft"))
    for name, counts in DOCUMENTED_PROCESSES.items():
        config = preset(name)
        header = (configuration.CONFIG_ROOT / "sft" / f"{name}.yaml").read_text()
        assert {int(n) for n in re.findall(r"--num_processes (\d+)", header)} <= set(counts)
        for processes in counts:
            accumulation = sft.accumulation_steps(config, processes)
            assert config.per_device_batch_size * accumulation * processes == config.batch_size, (name, processes)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_the_paper_presets_fit_eight_and_four_80_gb_gpus(name):
    config = preset(name)
    for processes in (8, 4):
        plan = sft.check_memory(config, MODELS[name], sft.launch_from_fsdp_config(processes), 80)
        assert plan is not None and plan.fits(80) and plan.world_size == processes


def test_the_8b_preset_on_one_80_gb_gpu_is_refused_with_the_numbers():
    config = preset("llama3.1-8b")
    with pytest.raises(UserError) as error:
        sft.check_memory(config, MODELS["llama3.1-8b"], sft.launch_from_fsdp_config(1), 80)
    message = str(error.value)
    assert "'llama3.1-8b'" in message and "1 process(es)" in message
    assert re.search(r"= 1\d\d\.\d GiB per GPU, a 80 GB GPU has 74\.5 GiB", message), message
    assert "--num_processes 4" in message and "fsdp_offload_params: true" in message  # fixes, with their figures
    assert "check_memory=false" in message


def test_offload_in_the_launcher_makes_one_gpu_enough():
    launch = sft.Launch(processes=1, fsdp=True, offload=True, activation_checkpointing=True)
    assert sft.check_memory(preset("llama3.1-8b"), MODELS["llama3.1-8b"], launch, 80).fits(80)


def test_a_smaller_micro_batch_is_offered_when_it_fits():
    config = preset("qwen2.5-7b")
    with pytest.raises(UserError, match=r"per_device_batch_size=1 \(accumulation 32: "):
        sft.check_memory(config, MODELS["qwen2.5-7b"], sft.launch_from_fsdp_config(1), 141)


def test_the_launch_is_read_from_accelerates_environment(monkeypatch, no_launcher):
    assert sft.launch_from_environment(1) == sft.Launch(1, fsdp=False, offload=False, activation_checkpointing=False)
    for name in FSDP_ENV:
        monkeypatch.setenv(name, "true")
    assert sft.launch_from_environment(8) == sft.Launch(8, fsdp=True, offload=True, activation_checkpointing=True)


def test_the_shipped_fsdp_config_shards_without_offload():
    assert sft.launch_from_fsdp_config(8) == sft.Launch(8, fsdp=True, offload=False, activation_checkpointing=True)


def test_cpu_runs_and_switched_off_checks_plan_nothing():
    assert sft.gpu_memory_to_check(preset("tiny-cpu", "gpu_memory_gb=80")) is None
    assert sft.gpu_memory_to_check(preset("llama3.1-8b", "gpu_memory_gb=80", "check_memory=false")) is None
    assert sft.gpu_memory_to_check(preset("llama3.1-8b", "gpu_memory_gb=80")) == 80
    assert sft.check_memory(preset("tiny-cpu"), "unknown/model", sft.launch_from_fsdp_config(1), None) is None
    with pytest.raises(UserError, match="gpu_memory_gb"):
        preset("tiny-cpu", "gpu_memory_gb=-1")


def test_a_run_that_cannot_fit_is_refused_before_anything_is_loaded(tmp_path, distilled, no_launcher):
    # A folder with Llama-3.1-8B's config.json only: no tokenizer, no weights, so only the plan can stop the run.
    folder = tmp_path / "llama"
    folder.mkdir()
    shape = json.loads((SHAPES_DIR / "meta-llama--Llama-3.1-8B-Instruct.json").read_text())
    (folder / "config.json").write_text(json.dumps(shape))
    with pytest.raises(UserError, match=r"does not fit in GPU memory: .* a 80 GB GPU has 74\.5 GiB") as error:
        sft.run(preset("llama3.1-8b", "gpu_memory_gb=80", f"data={distilled}", f"model={folder}", f"out={tmp_path / 'out'}"))
    assert "(no FSDP)" in str(error.value) and "--num_processes 4" in str(error.value)
    assert not (tmp_path / "out").exists()


def test_cli_plan_prints_the_plan_for_each_gpu_count():
    result = CliRunner().invoke(app, ["sft", "--config", "llama3.1-8b", "--model", MODELS["llama3.1-8b"], "--plan", "gpu_memory_gb=80"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("meta-llama/Llama-3.1-8B-Instruct: 8.03B parameters")
    verdicts = {int(m.group(1)): m.group(2) for m in re.finditer(r"^(\d) process\(es\), accumulation \d+: .*: (fits|does not fit)$", result.output, re.M)}
    assert verdicts == {1: "does not fit", 2: "does not fit", 4: "fits", 8: "fits"}
    assert "    fix: launch 4 processes" in result.output


def test_cli_training_still_needs_data_and_out(tmp_path):
    result = CliRunner().invoke(app, ["sft", "--config", "tiny-cpu", "--model", str(tmp_path)])
    assert result.exit_code == 2 and "missing --data and --out" in result.output


def test_a_model_the_planner_cannot_size_is_trained_unchecked(tmp_path, capsys):
    folder = tmp_path / "moe"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "mixtral", "num_local_experts": 8}))
    assert sft.check_memory(preset("llama3.1-8b"), folder, sft.launch_from_fsdp_config(1), 80) is None
    assert "memory plan skipped" in capsys.readouterr().err
