"""Settings refused before launch because they cannot work where VERL runs them."""

from __future__ import annotations

import pytest

from deepicd.errors import ConfigError
from deepicd.train import grpo_verl
from deepicd.train.grpo_config import load_grpo_config


@pytest.fixture()
def template(tmp_path):
    path = tmp_path / "t.jinja"
    path.write_text("{% for m in messages %}{{ m['content'] }}{% endfor %}{% if add_generation_prompt %}A:{% endif %}")
    return path


def _command(tmp_path, template, overrides):
    run = load_grpo_config("r1-zero-qwen2.5-32b", [f"verl.chat_template_file={template}", *overrides],
                          data=tmp_path / "data", out=tmp_path / "run")
    return grpo_verl.command(run)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000/v1", "http://localhost:8000/v1", "http://127.0.0.2:8000/v1"])
@pytest.mark.parametrize("cluster", [["verl.nnodes=2"], ["verl.ray_address=10.0.0.5:6379"]], ids=["nnodes", "ray"])
def test_a_loopback_judge_is_refused_on_a_cluster(tmp_path, template, url, cluster):
    with pytest.raises(ConfigError, match="loopback address.*every node.*judge.url=http://<judge-node-ip>"):
        _command(tmp_path, template, [*cluster, f"reward.overrides=[judge.url={url}]"])


def test_a_cluster_judge_on_a_private_address_and_a_local_loopback_judge_pass(tmp_path, template):
    argv = _command(tmp_path, template, ["verl.nnodes=2", "reward.overrides=[judge.url=http://10.0.0.7:8000/v1]"])
    assert "trainer.nnodes=2" in argv
    assert _command(tmp_path, template, [])  # one node: the judge on this node's loopback is reachable
    # A rule-only reward has no judge to place.
    assert _command(tmp_path, template, ["verl.nnodes=2", "reward.preset=paper"])


def test_verl_reward_timeout_must_outlast_the_judge(tmp_path, template):
    with pytest.raises(ConfigError, match="verl.reward_timeout_s.*batch deadline"):
        _command(tmp_path, template, ["verl.reward_timeout_s=300"])  # paper-judge: 300 s deadline
    assert _command(tmp_path, template, ["verl.reward_timeout_s=300", "reward.overrides=[judge.batch_deadline_s=120]"])


def test_verls_own_validation_runs_in_preflight_and_refuses_bad_batches(tmp_path, template):
    argv = _command(tmp_path, template, [])
    composed = grpo_verl.compose_verl(grpo_verl.verl_overrides(argv))
    assert grpo_verl.check_engine_batches(composed) == ""
    from omegaconf import open_dict

    with open_dict(composed):
        composed.trainer.n_gpus_per_node = 6  # 64 x 8 completions do not split over 6 GPUs
    assert "real_train_batch_size (512) must be divisible" in grpo_verl.check_engine_batches(composed)


def test_closed_turn_prefill_feeds_verl_the_published_prompts(tmp_path, data_dir, tiny_model):
    """verl.prefill=closed-turn: no custom template; prompts end with a finished assistant `<think>` message."""
    import pyarrow.parquet as pq

    from deepicd import models
    from deepicd.split_tables import verl_path

    run = load_grpo_config("r1-zero-qwen2.5-32b", ["verl.prefill=closed-turn"], model=str(tiny_model),
                          data=data_dir, out=tmp_path / "run")
    argv = grpo_verl.command(run)
    assert not any(arg.startswith("actor_rollout_ref.model.custom_chat_template=") for arg in argv)
    composed = grpo_verl.compose_verl(grpo_verl.verl_overrides(argv))
    written = grpo_verl.write_closed_turn_prompts(run)
    assert composed.data.train_files == str(written["train"]) and composed.data.val_files == str(written["val"])
    original = pq.read_table(verl_path(data_dir, "train")).to_pylist()
    copied = pq.read_table(written["train"]).to_pylist()
    assert len(copied) == len(original)
    assert [row["prompt"][:-1] for row in copied] == [row["prompt"] for row in original]
    assert all(row["prompt"][-1] == {"role": "assistant", "content": "<think>"} for row in copied)
    assert [row["reward_model"] for row in copied] == [row["reward_model"] for row in original]
    # What VERL's agent loop renders: the model's template, a closed assistant turn, then a new one opened.
    tokenizer = models.load_tokenizer(str(tiny_model), purpose="generate")
    rendered = tokenizer.apply_chat_template(copied[0]["prompt"], tokenize=False, add_generation_prompt=True)
    assert not rendered.endswith("<think>") and "<think>" in rendered


def test_template_prefill_is_the_default_and_a_wrong_mode_is_named(tmp_path, template):
    argv = _command(tmp_path, template, [])
    assert any(arg.startswith("actor_rollout_ref.model.custom_chat_template=") for arg in argv)
    with pytest.raises(ConfigError, match="verl.prefill"):
        _command(tmp_path, template, ["verl.prefill=open"])
