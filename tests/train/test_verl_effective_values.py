"""What VERL will actually do with our overrides: each setting read back the way the engine reads it.

Composing the overrides only proves that every key exists. A key can exist and
still be shadowed by another one the engine prefers (VERL clips with
`clip_ratio_low/high`, which its actor.yaml sets to 0.2, not with `clip_ratio`).
So every engine-neutral `grpo.*` setting is set to a distinctive value and read
back through the code path VERL uses: its config dataclasses, its policy loss,
its model-config loader.
"""

from __future__ import annotations

import math
from dataclasses import fields
from pathlib import Path

import pytest

from deepicd.errors import ConfigError
from deepicd.train import grpo_verl
from deepicd.train.grpo_config import GRPOSettings, load_grpo_config

CHATML = (
    "{%- for message in messages %}{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

# Each grpo.* key, a value unlike any default, and where VERL reads it in the composed config.
# Keys whose effect needs more than a lookup (clip_ratio, bf16) have their own tests below.
READ_BACK = {
    "train_batch_size": (32, lambda c: c.data.train_batch_size),
    "mini_batch_size": (16, lambda c: c.actor_rollout_ref.actor.ppo_mini_batch_size),
    "num_generations": (4, lambda c: c.actor_rollout_ref.rollout.n),
    "temperature": (0.7, lambda c: c.actor_rollout_ref.rollout.temperature),
    "top_p": (0.95, lambda c: c.actor_rollout_ref.rollout.top_p),
    "learning_rate": (3e-6, lambda c: c.actor_rollout_ref.actor.optim.lr),
    "warmup_steps": (7, lambda c: c.actor_rollout_ref.actor.optim.lr_warmup_steps),
    "epochs": (3, lambda c: c.trainer.total_epochs),
    "max_steps": (11, lambda c: c.trainer.total_training_steps),
    "max_prompt_length": (1000, lambda c: (c.data.max_prompt_length, c.actor_rollout_ref.rollout.prompt_length)),
    "max_completion_length": (500, lambda c: (c.data.max_response_length, c.actor_rollout_ref.rollout.response_length)),
    "entropy_coef": (0.005, lambda c: c.actor_rollout_ref.actor.entropy_coeff),
    "kl_loss_coef": (0.01, lambda c: (c.actor_rollout_ref.actor.use_kl_loss, c.actor_rollout_ref.actor.kl_loss_coef)),
    "kl_in_reward": (True, lambda c: c.algorithm.use_kl_in_reward),
    "gradient_checkpointing": (False, lambda c: c.actor_rollout_ref.model.enable_gradient_checkpointing),
    "save_steps": (13, lambda c: c.trainer.save_freq),
    "eval_steps": (17, lambda c: c.trainer.test_freq),
    "seed": (7, lambda c: (c.data.seed, c.actor_rollout_ref.rollout.seed)),
    "advantage_scale": ("none", lambda c: c.algorithm.norm_adv_by_std_in_grpo),
}
EXPECTED = {
    "advantage_scale": False,
    "max_prompt_length": (1000, 1000),
    "max_completion_length": (500, 500),
    "kl_loss_coef": (True, 0.01),
    "seed": (7, 7),
}
SEPARATE = {"clip_ratio", "bf16"}


@pytest.fixture(scope="module")
def template_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("template") / "chatml.jinja"
    path.write_text(CHATML)
    return path


def compose(template_file: Path, tmp_path: Path, overrides=()):
    run = load_grpo_config("r1-zero-qwen2.5-32b", [f"verl.chat_template_file={template_file}", *overrides],
                          data=tmp_path / "data", out=tmp_path / "run")
    return grpo_verl.compose_verl(grpo_verl.verl_overrides(grpo_verl.command(run)))


def test_every_grpo_setting_is_read_back():
    assert {f.name for f in fields(GRPOSettings)} == set(READ_BACK) | SEPARATE


@pytest.mark.parametrize("key", sorted(READ_BACK))
def test_grpo_setting_reaches_the_value_verl_reads(key, template_file, tmp_path):
    value, read = READ_BACK[key]
    overrides = [f"grpo.{key}={value}"]
    if key == "mini_batch_size":
        overrides.append("grpo.train_batch_size=64")
    if key == "train_batch_size":
        overrides.append("grpo.mini_batch_size=32")
    assert read(compose(template_file, tmp_path, overrides)) == EXPECTED.get(key, value)


def _effective_clip(actor_config) -> tuple[float, float]:
    """(low, high) clip of VERL's own policy loss, measured: ratio 1.5 with A=+1, ratio 0.5 with A=-1."""
    import torch
    from verl.trainer.ppo.core_algos import get_policy_loss_fn

    loss_fn = get_policy_loss_fn(actor_config.policy_loss.loss_mode)
    mask = torch.ones(1, 1)

    def loss(ratio: float, advantage: float) -> float:
        value, _ = loss_fn(old_log_prob=torch.zeros(1, 1), log_prob=torch.full((1, 1), math.log(ratio)),
                           advantages=torch.full((1, 1), advantage), response_mask=mask,
                           loss_agg_mode=actor_config.loss_agg_mode, config=actor_config)
        return float(value)

    high = -loss(1.5, 1.0) - 1.0  # -A * clip(ratio) with ratio capped at 1 + high
    low = 1.0 - loss(0.5, -1.0)  # -A * clip(ratio) with ratio floored at 1 - low
    return round(low, 6), round(high, 6)


@pytest.mark.parametrize("clip", [0.1, 0.28])
def test_clip_ratio_is_the_clip_verls_policy_loss_applies(clip, template_file, tmp_path):
    from verl.utils.config import omega_conf_to_dataclass

    cfg = compose(template_file, tmp_path, [f"grpo.clip_ratio={clip}"])
    assert _effective_clip(omega_conf_to_dataclass(cfg.actor_rollout_ref.actor)) == (clip, clip)


def test_bf16_off_is_refused_rather_than_ignored(template_file, tmp_path):
    with pytest.raises(ConfigError, match="grpo.bf16"):
        compose(template_file, tmp_path, ["grpo.bf16=false"])
    cfg = compose(template_file, tmp_path)
    assert cfg.actor_rollout_ref.actor.fsdp_config.dtype == "bfloat16"
    assert cfg.actor_rollout_ref.rollout.dtype == "bfloat16"


def test_verl_settings_reach_the_engine(template_file, tmp_path):
    cfg = compose(template_file, tmp_path, [
        "verl.tensor_parallel_size=4", "verl.gpu_memory_utilization=0.6", "verl.micro_batch_size_per_gpu=2",
        "verl.param_offload=true", "verl.optimizer_offload=true", "verl.max_checkpoints_to_keep=3", "verl.auto_fit=false"])
    a = cfg.actor_rollout_ref
    assert (a.rollout.tensor_model_parallel_size, a.rollout.gpu_memory_utilization) == (4, 0.6)
    assert a.actor.ppo_micro_batch_size_per_gpu == 2
    assert a.rollout.log_prob_micro_batch_size_per_gpu == 2 and a.ref.log_prob_micro_batch_size_per_gpu == 2
    assert a.actor.fsdp_config.param_offload is True and a.actor.fsdp_config.optimizer_offload is True
    assert a.ref.fsdp_config.param_offload is True
    assert cfg.trainer.max_actor_ckpt_to_keep == 3


def test_checkpoints_are_pruned_by_default(template_file, tmp_path):
    assert compose(template_file, tmp_path).trainer.max_actor_ckpt_to_keep == 2
    with pytest.raises(ConfigError, match="verl.max_checkpoints_to_keep"):
        compose(template_file, tmp_path, ["verl.max_checkpoints_to_keep=0"])


def _verl_model_config(cfg, model: Path):
    """VERL's HFModelConfig for the composed `actor_rollout_ref.model`, pointed at a local model."""
    from omegaconf import open_dict
    from verl.utils.config import omega_conf_to_dataclass

    section = cfg.actor_rollout_ref.model
    with open_dict(section):
        section.path = str(model)
        section.custom_chat_template = None
    return omega_conf_to_dataclass(section)


def _build_actor_module(model_config):
    """The actor module as VERL's FSDP engine builds it (its auto class, our composed hf_config)."""
    import torch
    from verl.utils.model import get_hf_auto_model_class

    auto_class = get_hf_auto_model_class(hf_config=model_config.hf_config)
    return auto_class.from_pretrained(model_config.local_path, torch_dtype=torch.float32, config=model_config.hf_config)


def test_verls_default_attention_needs_flash_attn_and_ours_builds(template_file, tmp_path, tiny_model):
    from transformers.utils import is_flash_attn_2_available

    cfg = compose(template_file, tmp_path)
    model_config = _verl_model_config(cfg, tiny_model)
    assert model_config.hf_config._attn_implementation == "sdpa"
    module = _build_actor_module(model_config)
    assert module.config._attn_implementation == "sdpa"

    default = compose(template_file, tmp_path)
    from omegaconf import open_dict

    with open_dict(default):
        default.actor_rollout_ref.model.override_config = {}
    verl_default = _verl_model_config(default, tiny_model)
    assert verl_default.hf_config._attn_implementation == "flash_attention_2"
    if not is_flash_attn_2_available():
        with pytest.raises(ImportError, match="(?i)flash"):
            _build_actor_module(verl_default)
    assert grpo_verl.check_attention("sdpa") == ""


def test_sdpa_with_remove_padding_keeps_packed_sequences_apart(template_file, tmp_path, tiny_model):
    """VERL's remove_padding packs a micro-batch into one row: no attention mask, restarting position ids and
    use_cache=False, which is what lets transformers build the block-diagonal mask for sdpa."""
    import torch

    module = _build_actor_module(_verl_model_config(compose(template_file, tmp_path), tiny_model)).eval()
    generator = torch.Generator().manual_seed(0)
    lengths = [7, 12, 5]
    sequences = [torch.randint(3, module.config.vocab_size, (n,), generator=generator) for n in lengths]
    with torch.no_grad():
        alone = [module(input_ids=s[None]).logits[0] for s in sequences]
        packed_ids = torch.cat(sequences)[None]
        positions = torch.cat([torch.arange(n) for n in lengths])[None]
        packed = module(input_ids=packed_ids, position_ids=positions, attention_mask=None, use_cache=False).logits[0]
    assert torch.allclose(packed, torch.cat(alone), atol=1e-5)


def test_check_attention_names_the_missing_package(monkeypatch):
    from transformers.utils import import_utils

    monkeypatch.setattr(import_utils, "is_flash_attn_2_available", lambda: False)
    assert "flash-attn" in grpo_verl.check_attention("flash_attention_2")
    assert "verl.attn_implementation=sdpa" in grpo_verl.check_attention("flash_attention_2")
