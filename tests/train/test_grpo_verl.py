"""The VERL backend: command composition against VERL's own schema, prefill template, preflight, export."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from deepicd.cli import app
from deepicd.errors import ConfigError, UserError
from deepicd.manifest import KEYS
from deepicd.prompts import task
from deepicd.serving import free_port
from deepicd.train import grpo_verl
from deepicd.train.grpo_config import load_grpo_config

# A ChatML template in the style of Qwen2.5's (newlines, Jinja string escapes, whitespace control).
QWEN_STYLE = (
    "{%- for message in messages %}\n"
    "    {{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|im_start|>assistant\\n' }}\n"
    "{%- endif %}\n"
)
# Llama-3-style: literal text after block tags and a BOS variable.
LLAMA_STYLE = (
    "{{ bos_token }}{% for message in messages %}<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n"
    "{{ message['content'] | trim }}<|eot_id|>{% endfor %}{% if add_generation_prompt %}"
    "<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)


def parse_override_value(text: str):
    """What VERL's Hydra main makes of `key=<text>`: the value, interpolations resolved."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    value = OverridesParser.create().parse_override(f"key={text}").value()
    return OmegaConf.create({"key": value}).key


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(list("ab'\"\\${}[],= \n:%-_/.0") + ["${x}", "\\'", "{%", "%}"]), max_size=20).map("".join))
def test_hydra_quoting_round_trips_any_string(text):
    assert parse_override_value(grpo_verl.hydra_quote(text)) == text
    assert parse_override_value(grpo_verl.hydra_value(text)) == text


@pytest.mark.parametrize("value", ["vllm", "Qwen/Qwen2.5-32B-Instruct", "/runs/a b/c.parquet", "1e-6", "true", "null",
                                   "10.0.0.1:6379", ""])
def test_hydra_value_keeps_strings_strings(value):
    assert parse_override_value(grpo_verl.hydra_value(value)) == value


def test_hydra_value_of_typed_values():
    assert parse_override_value(grpo_verl.hydra_value(1e-6)) == 1e-6
    assert parse_override_value(grpo_verl.hydra_value(False)) is False
    assert list(parse_override_value(grpo_verl.hydra_value(["judge.url=http://h:1/v1", "a='b'"]))) == [
        "judge.url=http://h:1/v1", "a='b'"]


@pytest.mark.parametrize("base", [QWEN_STYLE, LLAMA_STYLE], ids=["qwen-style", "llama-style"])
def test_prefill_template_ends_the_generation_prompt_with_think(base):
    from transformers.utils.chat_template_utils import render_jinja_template

    special = {"bos_token": "<|begin_of_text|>"}
    template = grpo_verl.prefill_template(base, task.PREFILL, special)
    messages = task.messages("Chest pain.")

    def render(t, generation):
        return render_jinja_template([messages], chat_template=t, add_generation_prompt=generation, **special)[0][0]

    assert render(template, True) == render(base, True) + "<think>"
    assert render(template, False) == render(base, False)
    assert grpo_verl.strip_prefill(template) == base or grpo_verl.strip_prefill(template) == base.rstrip()


def test_prefill_template_with_the_tiny_tokenizer(tiny_model):
    from deepicd.models import load_tokenizer

    tokenizer = load_tokenizer(tiny_model)
    base = tokenizer.chat_template
    tokenizer.chat_template = grpo_verl.prefill_template(base, task.PREFILL)
    prompt = tokenizer.apply_chat_template(task.messages("Fever."), tokenize=False, add_generation_prompt=True)
    assert prompt == task.render(load_tokenizer(tiny_model), "Fever.")
    assert prompt.endswith("<|im_start|>assistant\n<think>")


def _paper_run(tmp_path: Path, data_dir: Path, tiny_model: Path, overrides=()):
    return load_grpo_config("r1-zero-qwen2.5-32b", list(overrides), data=data_dir, out=tmp_path / "run",
                           model=str(tiny_model))


@pytest.fixture(scope="module")
def paper_composed(tmp_path_factory, data_dir):
    """The paper preset's command (hub id model, template from a file) composed by VERL's own Hydra config."""
    folder = tmp_path_factory.mktemp("paper")
    template_file = folder / "chatml.jinja"
    template_file.write_text(QWEN_STYLE)
    run = load_grpo_config("r1-zero-qwen2.5-32b", [f"verl.chat_template_file={template_file}"],
                          data=data_dir, out=folder / "run")
    argv = grpo_verl.command(run)
    return run, argv, grpo_verl.compose_verl(grpo_verl.verl_overrides(argv))


def test_paper_command_composes_against_verls_schema_with_the_paper_values(paper_composed, data_dir):
    run, argv, cfg = paper_composed
    assert argv[1:3] == ["-m", "verl.trainer.main_ppo"]
    actor, rollout, model = cfg.actor_rollout_ref.actor, cfg.actor_rollout_ref.rollout, cfg.actor_rollout_ref.model
    assert cfg.algorithm.adv_estimator == "grpo" and cfg.algorithm.norm_adv_by_std_in_grpo is True
    assert (cfg.data.train_batch_size, actor.ppo_mini_batch_size, rollout.n) == (64, 64, 8)
    assert (rollout.temperature, actor.optim.lr, actor.optim.lr_warmup_steps) == (0.9, 1e-6, 80)
    assert (cfg.trainer.total_epochs, cfg.data.max_prompt_length, cfg.data.max_response_length) == (1, 2048, 1024)
    assert (rollout.prompt_length, rollout.response_length) == (2048, 1024)  # interpolated from data.*
    assert actor.entropy_coeff == 0.001
    assert actor.use_kl_loss is False and cfg.algorithm.use_kl_in_reward is False
    assert (rollout.name, rollout.tensor_model_parallel_size, rollout.gpu_memory_utilization) == ("vllm", 1, 0.4)
    assert (cfg.trainer.n_gpus_per_node, cfg.trainer.nnodes, cfg.trainer.save_freq) == (8, 1, 50)
    assert model.enable_gradient_checkpointing is True and model.use_remove_padding is True
    assert actor.ppo_micro_batch_size_per_gpu == 4 and rollout.log_prob_micro_batch_size_per_gpu == 4
    assert actor.fsdp_config.dtype == "bfloat16" and rollout.dtype == "bfloat16"
    assert model.path == "Qwen/Qwen2.5-32B-Instruct"
    assert cfg.data.train_files == str(data_dir.resolve() / "verl" / "train.parquet")
    assert cfg.data.val_files == str(data_dir.resolve() / "verl" / "val.parquet")
    assert cfg.trainer.resume_mode == "auto"
    assert cfg.trainer.default_local_dir == str((Path(run.out) / "checkpoints").resolve())
    # Reward wiring: the 0.9 keys, our installed entry file, the judge's rate-limited manager.
    reward = cfg.reward
    assert Path(reward.custom_reward_function.path).is_file()
    assert reward.custom_reward_function.path == str(grpo_verl.reward_entry_path())
    assert reward.custom_reward_function.name == "compute_score"
    assert reward.custom_reward_function.reward_kwargs.preset == "paper-judge"
    assert reward.reward_manager.name == "rate_limited"
    assert reward.max_concurrent == 64 and reward.timeout == 900.0
    assert model.custom_chat_template == grpo_verl.prefill_template(QWEN_STYLE, "<think>")


def test_composed_sections_pass_verls_dataclass_validation(paper_composed):
    from verl.utils.config import omega_conf_to_dataclass

    _, _, cfg = paper_composed
    actor = omega_conf_to_dataclass(cfg.actor_rollout_ref.actor)
    rollout = omega_conf_to_dataclass(cfg.actor_rollout_ref.rollout)
    assert (actor.ppo_mini_batch_size, actor.entropy_coeff, rollout.n) == (64, 0.001, 8)
    assert (actor.optim.lr, actor.optim.lr_warmup_steps, rollout.gpu_memory_utilization) == (1e-6, 80, 0.4)


def test_rule_only_reward_uses_the_naive_manager_and_ray_address_is_passed(tmp_path, data_dir, tiny_model):
    run = _paper_run(tmp_path, data_dir, tiny_model, ["reward.preset=paper", "verl.ray_address=10.0.0.5:6379",
                                                          "grpo.max_steps=7"])
    cfg = grpo_verl.compose_verl(grpo_verl.verl_overrides(grpo_verl.command(run)))
    assert cfg.reward.reward_manager.name == "naive" and "max_concurrent" not in cfg.reward
    assert cfg.ray_kwargs.ray_init.address == "10.0.0.5:6379"
    assert cfg.trainer.total_training_steps == 7


def test_advantage_scale_maps_onto_verl_or_is_refused(data_dir, tmp_path):
    run = load_grpo_config("r1-zero-qwen2.5-32b", ["grpo.advantage_scale=none"], data=data_dir, out=tmp_path,
                          model="m")
    assert "algorithm.norm_adv_by_std_in_grpo=False" in grpo_verl.overrides(run, chat_template=None)
    with pytest.raises(ConfigError, match="grpo.advantage_scale.*batch is for the trl backend"):
        load_grpo_config("r1-zero-qwen2.5-32b", ["grpo.advantage_scale=batch"], data=data_dir, out=tmp_path)


def test_dry_run_prints_one_shell_line_equal_to_the_command(tmp_path, data_dir, tiny_model):
    args = ["train-grpo", "--config", "r1-zero-qwen2.5-32b", "--data", str(data_dir), "--model", str(tiny_model),
            "--out", str(tmp_path / "run"), "--dry-run"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    expected = grpo_verl.command(_paper_run(tmp_path, data_dir, tiny_model))
    assert shlex.split(lines[0]) == expected
    assert not (tmp_path / "run").exists()  # a dry run writes nothing


def test_shell_line_keeps_multiline_arguments_on_one_line():
    line = grpo_verl.shell_line(["python", "key='a\nb'\\"])
    assert "\n" not in line and line.endswith("$'key=\\'a\\nb\\'\\\\'")


def _eight_gpus() -> bool:
    import torch

    return torch.cuda.is_available() and torch.cuda.device_count() >= 8


@pytest.mark.skipif(_eight_gpus(), reason="the GPU check passes on a machine with 8 GPUs")
def test_preflight_on_a_cpu_machine_passes_everything_but_the_gpu_count(tmp_path, data_dir, tiny_model):
    run = _paper_run(tmp_path, data_dir, tiny_model, ["reward.preset=paper", "verl.gpu_memory_gb=80"])
    checks = {check.name: check for check in grpo_verl.preflight(run, grpo_verl.command(run))}
    assert [name for name, check in checks.items() if not check.ok] == ["gpus"]
    assert "per GPU of 80 GB" in checks["memory"].detail and checks["batches"].ok and checks["attention"].ok
    assert "0 GPU(s)" in checks["gpus"].detail and "1 node(s) x 8 = 8" in checks["gpus"].detail
    assert "VERL's loader" in checks["reward"].detail


@pytest.mark.skipif(_eight_gpus(), reason="the GPU check passes on a machine with 8 GPUs")
def test_the_stage_prepares_shows_and_stops_at_a_failed_preflight(tmp_path, data_dir, tiny_model):
    from deepicd.train import grpo

    run = _paper_run(tmp_path, data_dir, tiny_model, ["reward.preset=paper", "verl.gpu_memory_gb=80"])
    seen = []
    with pytest.raises(UserError, match=r"preflight failed \(gpus\); nothing was started"):
        grpo.run(run, on_prepared=seen.append)
    assert seen[0].argv[1:3] == ["-m", "verl.trainer.main_ppo"] and seen[0].failed == ["gpus"]
    assert "per GPU of 80 GB" in seen[0].memory and not (Path(run.out) / "manifest.json").exists()


@pytest.mark.skipif(_eight_gpus(), reason="the GPU check passes on a machine with 8 GPUs")
def test_preflight_names_a_broken_data_file_and_the_cli_stops_before_launching(tmp_path, tiny_model):
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = tmp_path / "data"
    (data / "verl").mkdir(parents=True)
    pq.write_table(pa.table({"prompt": ["just text"], "data_source": ["x"]}), data / "verl" / "train.parquet")
    result = CliRunner().invoke(app, ["train-grpo", "--data", str(data), "--model", str(tiny_model),
                                      "--out", str(tmp_path / "run"), "reward.preset=paper"])
    assert result.exit_code == 2
    assert "missing column(s) ['ability', 'reward_model', 'extra_info']" in result.output
    assert "val.parquet: file not found" in result.output
    assert "preflight failed (memory, data:train, data:val, reward, gpus)" in result.output
    assert "set verl.gpu_memory_gb=80" in result.output
    assert not (tmp_path / "run" / "manifest.json").exists()


def test_preflight_refuses_a_judge_run_on_data_without_notes(tmp_path, tiny_model):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from grpo_fixtures import write_data

    data = write_data(tmp_path / "data", train=2, val=2)
    table = pq.read_table(data / "verl" / "train.parquet").to_pylist()
    for row in table:
        row["extra_info"]["note"] = ""
    pq.write_table(pa.Table.from_pylist(table), data / "verl" / "train.parquet")
    run = _paper_run(tmp_path, data, tiny_model)
    checks = {c.name: c for c in grpo_verl.preflight(run, grpo_verl.command(run))}
    assert not checks["data:train"].ok and "extra_info.note" in checks["data:train"].detail


def test_preflight_reports_a_judge_that_does_not_answer(tmp_path, data_dir, tiny_model):
    import time

    port = free_port()  # a loopback port nobody listens on
    run = _paper_run(tmp_path, data_dir, tiny_model, [
        f"reward.overrides=[judge.url=http://127.0.0.1:{port}/v1,judge.model={tiny_model},judge.timeout_s=0.5,judge.retries=0]"])
    started = time.monotonic()
    checks = {c.name: c for c in grpo_verl.preflight(run, grpo_verl.command(run))}
    assert time.monotonic() - started < 60
    assert not checks["reward"].ok
    assert f"judge at http://127.0.0.1:{port}/v1 did not answer" in checks["reward"].detail


def test_missing_model_is_reported_with_the_chat_template_hint(tmp_path, data_dir):
    run = load_grpo_config("r1-zero-qwen2.5-32b", data=data_dir, out=tmp_path, model=str(tmp_path / "nope"))
    with pytest.raises(UserError, match="model folder not found.*verl.chat_template_file"):
        grpo_verl.command(run)


def test_launch_returns_the_engines_exit_code():
    assert grpo_verl.launch([sys.executable, "-c", "import sys; sys.exit(3)"]) == 3
    assert grpo_verl.launch([sys.executable, "-c", "pass"]) == 0


def test_a_run_records_itself_before_launch_and_its_outcome_after(tmp_path, data_dir):
    """The manifest exists while the engine runs (a crash still says what ran) and ends with the exit code."""
    run = load_grpo_config("r1-zero-qwen2.5-32b", data=data_dir, out=tmp_path / "run", model="m")
    (tmp_path / "run").mkdir()
    seen = tmp_path / "seen.json"
    # The stand-in engine copies the manifest it finds at launch, then fails.
    engine = [sys.executable, "-c", f"import shutil, sys; shutil.copy({str(tmp_path / 'run' / 'manifest.json')!r}, "
              f"{str(seen)!r}); sys.exit(3)"]
    result = grpo_verl.train(run, engine)
    at_launch, final = json.loads(seen.read_text()), json.loads(result.manifest.read_text())
    assert tuple(at_launch) == tuple(final) == KEYS
    assert at_launch["result"] == {"backend": "verl", "command": engine, "exit_code": None, "model": None,
                                   "exported_from": None}
    assert at_launch["finished"] is None and at_launch["inputs"]["train"]["sha256"]
    assert (at_launch["stage"], at_launch["method"]) == ("train-grpo", "grpo")
    assert (result.exit_code, final["result"]["exit_code"], result.model_dir) == (3, 3, None)  # not exported
    assert final["result"]["model"] is None and final["finished"] >= final["created"]


def test_overwrite_starts_the_run_over(tmp_path, data_dir):
    """VERL resumes from the checkpoints it finds: --overwrite removes them (and the old model) first."""
    out = tmp_path / "run"
    _fake_checkpoints(out / "checkpoints")
    (out / "model").mkdir()
    (out / "notes.txt").write_text("mine")
    engine = [sys.executable, "-c", "import sys; sys.exit(3)"]
    kept = load_grpo_config("r1-zero-qwen2.5-32b", data=data_dir, out=out, model="m")
    grpo_verl.train(kept, engine)
    assert (out / "checkpoints" / "global_step_100").is_dir() and (out / "model").is_dir()
    anew = load_grpo_config("r1-zero-qwen2.5-32b", ["overwrite=true"], data=data_dir, out=out, model="m")
    grpo_verl.train(anew, engine)
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "notes.txt"]
    (out / "model").mkdir()
    own_model = load_grpo_config("r1-zero-qwen2.5-32b", data=data_dir, out=out, model=str(out / "model"))
    with pytest.raises(UserError, match="is the input model"):
        grpo_verl.train(own_model, engine)


def _fake_checkpoints(root: Path, steps=(50, 100), latest: int | None = 100) -> Path:
    for step in steps:
        (root / f"global_step_{step}" / "actor" / "huggingface").mkdir(parents=True)
    if latest is not None:
        (root / "latest_checkpointed_iteration.txt").write_text(str(latest))
    return root


def test_find_checkpoint_picks_the_tracked_latest_or_the_asked_step(tmp_path):
    run = tmp_path / "run"
    ckpts = _fake_checkpoints(run / "checkpoints")
    assert grpo_verl.find_checkpoint(run) == ckpts / "global_step_100" / "actor"
    assert grpo_verl.find_checkpoint(ckpts, step=50) == ckpts / "global_step_50" / "actor"
    assert grpo_verl.find_checkpoint(ckpts / "global_step_50") == ckpts / "global_step_50" / "actor"
    assert grpo_verl.find_checkpoint(ckpts / "global_step_50" / "actor") == ckpts / "global_step_50" / "actor"
    with pytest.raises(UserError, match=r"no checkpoint for step 75.*\[50, 100\]"):
        grpo_verl.find_checkpoint(ckpts, step=75)
    with pytest.raises(UserError, match="no global_step_N checkpoints"):
        grpo_verl.find_checkpoint(tmp_path / "run" / "checkpoints" / "global_step_50" / "actor" / "huggingface")


def test_only_a_checkpoint_verl_tracked_as_complete_is_taken_unasked(tmp_path):
    ckpts = _fake_checkpoints(tmp_path, steps=(5, 40, 300), latest=40)  # global_step_300: a save cut short
    assert grpo_verl.find_checkpoint(ckpts) == ckpts / "global_step_40" / "actor"
    (ckpts / "latest_checkpointed_iteration.txt").unlink()
    with pytest.raises(UserError, match="no checkpoint .* is known to be complete; pass --step N"):
        grpo_verl.find_checkpoint(ckpts)
    assert grpo_verl.find_checkpoint(ckpts, step=300) == ckpts / "global_step_300" / "actor"
    (ckpts / "latest_checkpointed_iteration.txt").write_text("7")
    with pytest.raises(UserError, match=r"no checkpoint for step 7.*\[5, 40, 300\]"):
        grpo_verl.find_checkpoint(ckpts)


def test_export_command_is_verls_model_merger(tmp_path):
    argv = grpo_verl.export_command(tmp_path / "global_step_50" / "actor", tmp_path / "model", python="python")
    assert argv == ["python", "-m", "verl.model_merger", "merge", "--backend", "fsdp", "--local_dir",
                    str(tmp_path / "global_step_50" / "actor"), "--target_dir", str(tmp_path / "model")]


@pytest.mark.slow
def test_export_reports_a_failing_merge_and_leaves_no_target(tmp_path):
    ckpts = _fake_checkpoints(tmp_path / "checkpoints")  # empty actor folders: the merger must fail
    with pytest.raises(UserError, match="verl.model_merger failed"):
        grpo_verl.export(ckpts, tmp_path / "model")
    assert not (tmp_path / "model").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".model")]


@pytest.mark.parametrize("jinja_files", [True, False])
def test_exported_tokenizer_gets_its_original_chat_template_back(tmp_path, tiny_model, jinja_files):
    from deepicd.models import load_tokenizer

    tokenizer = load_tokenizer(tiny_model)
    original = tokenizer.chat_template
    tokenizer.chat_template = grpo_verl.prefill_template(original, "<think>")
    tokenizer.save_pretrained(tmp_path, save_jinja_files=jinja_files)
    assert grpo_verl.restore_chat_template(tmp_path) is True
    assert load_tokenizer(tmp_path).chat_template == original
    assert grpo_verl.restore_chat_template(tmp_path) is False
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert grpo_verl.TEMPLATE_MARK not in json.dumps(config)
