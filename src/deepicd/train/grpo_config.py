"""The GRPO run configuration: one typed schema for both engines, presets in `configs/grpo/*.yaml`.

Hyper-parameters are named once, engine-neutrally (`grpo:`), in the units the
paper reports them: a step takes `train_batch_size` prompts and samples
`num_generations` completions for each; the optimizer updates once per
`mini_batch_size` prompts. `grpo_verl` and `grpo_trl` translate these into
each engine's own keys, so a preset means the same run on either engine.
Settings only one engine has live in its block (`verl:`, `trl:`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Sequence

from deepicd.config import available_presets, load, with_fields
from deepicd.errors import ConfigError
from deepicd.generate.config import Dtype  # the model dtypes a trainer and a generator accept are one set
from deepicd.schema import choice, require

WHERE = "grpo config"


class Backend(StrEnum):
    verl = "verl"  # GPU nodes, Ray
    trl = "trl"  # one device


class Stage(StrEnum):
    grpo = "grpo"  # from an instruct model (R1-zero)
    sft_grpo = "sft-grpo"  # from an SFT checkpoint


class Rollout(StrEnum):  # the engines VERL 0.9 rolls out with
    vllm = "vllm"
    sglang = "sglang"
    trtllm = "trtllm"


class AdvantageScale(StrEnum):  # what a completion's reward minus its group's mean is divided by
    group = "group"  # the group's standard deviation: GRPO as published, VERL's default
    batch = "batch"  # the whole batch's: a group whose rewards barely differ keeps small advantages (TRL only)
    none = "none"  # nothing: advantages in reward units (Dr. GRPO)


class PrefillMode(StrEnum):
    template = "template"  # a chat template that opens the assistant turn with the prefill
    closed_turn = "closed-turn"  # the published run: a closed assistant message before the generation prompt


class Attention(StrEnum):
    sdpa = "sdpa"
    flash_attention_2 = "flash_attention_2"
    flash_attention_3 = "flash_attention_3"
    eager = "eager"


class UseVllm(StrEnum):
    auto = "auto"  # when vllm is installed and a GPU is present
    true = "true"
    false = "false"



@dataclass
class RewardSettings:
    """Which reward preset scores the completions (`configs/rewards/<preset>.yaml` or a YAML path)."""

    preset: str = "paper-judge"  # reward preset name (configs/rewards/NAME.yaml) or a YAML file
    overrides: list[str] = field(default_factory=list)  # key=value overrides of the reward preset


@dataclass
class GRPOSettings:
    """Engine-neutral GRPO hyper-parameters (the paper's R1-zero values by default)."""

    train_batch_size: int = 64  # prompts per step
    mini_batch_size: int = 64  # prompts per optimizer update; equal to train_batch_size = one update per step
    num_generations: int = 8  # completions sampled per prompt (the group)
    temperature: float = 0.9  # sampling temperature of the rollouts
    top_p: float = 1.0  # nucleus sampling of the rollouts (1: off)
    learning_rate: float = 1e-6  # AdamW, constant after warm-up
    warmup_steps: int = 80  # linear warm-up of the learning rate, in optimizer steps
    epochs: int = 1  # passes over the training prompts (when max_steps is -1)
    max_steps: int = -1  # > 0 stops after this many steps; -1 lets `epochs` decide
    max_prompt_length: int = 2048  # tokens; longer prompts are dropped, not truncated
    max_completion_length: int = 1024  # tokens
    entropy_coef: float = 0.001  # weight of the entropy bonus in the actor loss
    kl_loss_coef: float = 0.0  # 0 = no KL loss, no reference model
    kl_in_reward: bool = False  # subtract a KL penalty from the reward instead (needs the reference model)
    clip_ratio: float = 0.2  # PPO clip range of the importance ratio
    advantage_scale: str = "group"  # group (published), batch (TRL only) or none: the divisor of the advantages
    bf16: bool = True  # bfloat16 mixed precision (GPU); ignored on the CPU
    gradient_checkpointing: bool = True  # recompute activations in the backward pass to save memory (GPU)
    save_steps: int = 50  # checkpoint every N steps (resumable)
    eval_steps: int = 50  # validation every N steps (VERL); 0 = never
    seed: int = 42  # seeds sampling, data order and initialisation of the run


@dataclass
class VerlSettings:
    """Settings only VERL has: cluster shape, rollout engine, micro-batching, logging."""

    nnodes: int = 1  # machines of the Ray cluster
    n_gpus_per_node: int = 8  # GPUs used on each machine
    ray_address: str = ""  # multi-node: address of a running Ray cluster ("auto" or host:port); empty = local
    micro_batch_size_per_gpu: int = 4  # sequences per forward/backward pass of the actor on one GPU
    rollout: str = "vllm"  # vllm, sglang or trtllm
    # The published run: tensor parallel 1 at 0.4. vLLM fits weights and KV cache inside 0.4 x memory, so a 32B
    # model fits only on GPUs of >= ~160 GB; auto_fit raises the tensor-parallel size (and, if needed, offloads)
    # on smaller GPUs and prints what it changed.
    tensor_parallel_size: int = 1  # GPUs that hold one copy of the rollout engine
    gpu_memory_utilization: float = 0.4  # share of each GPU the rollout engine may take for weights and KV cache
    # Planning: GPU memory in GB as vendors state it (80 for H100); 0 = the GPUs detected at launch.
    gpu_memory_gb: float = 0.0
    # Pick the smallest tensor-parallel size (and, if needed, FSDP offload) that fits the GPUs; false keeps the preset.
    auto_fit: bool = True
    param_offload: bool = False  # FSDP parameters of actor and reference kept in CPU memory between uses
    optimizer_offload: bool = False  # AdamW state kept in CPU memory between updates
    # Attention kernel of the FSDP actor and reference. VERL asks for flash_attention_2, which needs the
    # flash-attn package; sdpa ships with torch and is exact with remove_padding (packed sequences are masked).
    attn_implementation: str = "sdpa"
    remove_padding: bool = True  # pack sequences without padding in the actor (faster, same result)
    reward_workers: int = 8  # processes that score rollouts
    judge_max_concurrent: int = 64  # responses scored at once per reward worker when the judge is on
    reward_timeout_s: float = 900.0  # per response, judge included; must exceed the judge's batch deadline
    project_name: str = "deepicd"  # the logger's project (wandb, tensorboard)
    experiment_name: str = ""  # empty: the preset name
    logger: list[str] = field(default_factory=lambda: ["console"])  # VERL loggers: console, wandb, tensorboard
    val_before_train: bool = False  # score the validation split once before the first step
    max_checkpoints_to_keep: int = 2  # older global_step_N folders are deleted (12 bytes a parameter: ~390 GB for 32B)
    # How the assistant turn starts with the reward preset's prefill (`<think>`). "template": a chat template
    # whose generation prompt ends with it, so the policy continues inside its reasoning. "closed-turn": as the
    # published run, the prefill is a closed assistant message before the generation prompt (never prefilled).
    prefill: str = "template"
    chat_template_file: str = ""  # Jinja chat template of the model; empty: read it from the model's tokenizer
    export_after_training: bool = True  # write the final actor as a Hugging Face model to <out>/model
    extra_overrides: list[str] = field(default_factory=list)  # raw VERL overrides, appended last


@dataclass
class TrlSettings:
    """Settings only the single-device TRL backend has."""

    per_device_batch_size: int = 8  # completions per forward/backward pass
    use_vllm: str = "auto"  # auto (when vllm is installed and a GPU is present), true or false
    vllm_gpu_memory_utilization: float = 0.3  # share of the GPU vLLM may take when it generates
    loss_type: str = "dapo"  # token-level averaging, as VERL's token-mean
    logging_steps: int = 1  # log losses and rewards every N steps
    save_total_limit: int = 2  # checkpoints kept under <out>/checkpoints
    report_to: list[str] = field(default_factory=lambda: ["none"])  # TRL integrations: none, wandb, tensorboard
    log_completions: bool = False  # print sampled completions with their rewards
    dtype: str = "auto"  # auto, bfloat16 or float32
    cpu_threads: int = 0  # torch threads when training on the CPU; 0 = torch's default


@dataclass
class GRPORunConfig:
    """A whole GRPO run: model, data, reward, hyper-parameters, engine blocks and output folder."""

    name: str = ""  # the preset's name, recorded in the manifest
    stage: str = "grpo"  # "grpo" (from an instruct model) or "sft-grpo" (from an SFT checkpoint)
    backend: str = "verl"  # "verl" (GPU nodes, Ray) or "trl" (one device)
    model: str = ""  # Hugging Face folder or hub id
    data: str = ""  # output of `deepicd preprocess` (--data)
    out: str = ""  # run folder: checkpoints, model, manifest, reward curves (--out)
    overwrite: bool = False  # start over: remove the run folder's checkpoints, model and records first (--overwrite)
    max_train_samples: int = -1  # use only the first N training prompts (-1: all)
    max_val_samples: int = -1  # use only the first N validation prompts (-1: all)
    reward: RewardSettings = field(default_factory=RewardSettings)  # what scores the completions
    grpo: GRPOSettings = field(default_factory=GRPOSettings)  # hyper-parameters both engines read
    verl: VerlSettings = field(default_factory=VerlSettings)  # read only by the verl backend
    trl: TrlSettings = field(default_factory=TrlSettings)  # read only by the trl backend

    def __post_init__(self) -> None:
        _check(self)


def presets() -> list[str]:
    return available_presets("grpo")


def load_grpo_config(
    name_or_path: str,
    overrides: Sequence[str] = (),
    *,
    model: str | None = None,
    data: str | Path | None = None,
    out: str | Path | None = None,
    backend: str | None = None,
) -> GRPORunConfig:
    """A preset with `key=value` overrides; paths given on the command line win over the preset's."""
    config = load(GRPORunConfig, "grpo", name_or_path, overrides)
    changes = {"model": model, "data": data, "out": out, "backend": backend,
               "name": None if config.name else Path(str(name_or_path)).stem}
    return with_fields(config, {k: None if v is None else str(v) for k, v in changes.items()})


def _positive(section: object, prefix: str, keys: Sequence[str]) -> None:
    for key in keys:
        value = getattr(section, key)
        if value <= 0:
            raise ConfigError(f"invalid grpo config at key '{prefix}{key}': must be positive, got {value}")


def _check(config: GRPORunConfig) -> None:
    """Reject settings no engine could run, naming the key at fault (run by the config when it is built)."""
    config.backend = choice(Backend, config.backend, "backend", WHERE)
    config.stage = choice(Stage, config.stage, "stage", WHERE)
    g = config.grpo
    g.advantage_scale = choice(AdvantageScale, g.advantage_scale, "grpo.advantage_scale", WHERE)
    _positive(g, "grpo.", ("train_batch_size", "mini_batch_size", "num_generations", "max_prompt_length",
                           "max_completion_length", "epochs", "save_steps"))
    _positive(g, "grpo.", ("learning_rate", "temperature", "top_p"))
    if g.num_generations < 2:
        raise ConfigError("invalid grpo config at key 'grpo.num_generations': GRPO needs at least 2 completions per prompt")
    if g.train_batch_size % g.mini_batch_size:
        raise ConfigError(
            f"invalid grpo config at key 'grpo.mini_batch_size': {g.mini_batch_size} does not divide "
            f"train_batch_size={g.train_batch_size}"
        )
    for key in ("warmup_steps", "eval_steps", "kl_loss_coef", "entropy_coef"):
        require(getattr(g, key) >= 0, WHERE, f"grpo.{key}", "must not be negative", getattr(g, key))
    if config.backend == "verl":
        _validate_verl(config)
    else:
        _validate_trl(config)


def _validate_verl(config: GRPORunConfig) -> None:
    g, v = config.grpo, config.verl
    _positive(v, "verl.", ("nnodes", "n_gpus_per_node", "micro_batch_size_per_gpu", "tensor_parallel_size",
                           "reward_workers", "judge_max_concurrent", "reward_timeout_s"))
    if not 0 < v.gpu_memory_utilization <= 1:
        raise ConfigError("invalid grpo config at key 'verl.gpu_memory_utilization': must be in (0, 1]")
    v.rollout = choice(Rollout, v.rollout, "verl.rollout", WHERE)
    if g.advantage_scale == AdvantageScale.batch:
        raise ConfigError("invalid grpo config at key 'grpo.advantage_scale': VERL 0.9's GRPO divides by the group's "
                          "standard deviation or by nothing; batch is for the trl backend")
    gpus = v.nnodes * v.n_gpus_per_node
    per_gpu, rest = divmod(g.mini_batch_size * g.num_generations, gpus)
    if rest or per_gpu % v.micro_batch_size_per_gpu:
        raise ConfigError(
            f"invalid grpo config at key 'verl.micro_batch_size_per_gpu': a mini-batch of {g.mini_batch_size} prompts x "
            f"{g.num_generations} completions spread over {gpus} GPUs must split into micro-batches of "
            f"{v.micro_batch_size_per_gpu}"
        )
    if v.max_checkpoints_to_keep < 1:
        raise ConfigError("invalid grpo config at key 'verl.max_checkpoints_to_keep': must be at least 1 "
                          f"(each checkpoint of a 32B model takes ~390 GB), got {v.max_checkpoints_to_keep}")
    if v.gpu_memory_gb < 0:
        raise ConfigError(f"invalid grpo config at key 'verl.gpu_memory_gb': must be >= 0 (0 = detect), got {v.gpu_memory_gb}")
    v.prefill = choice(PrefillMode, v.prefill, "verl.prefill", WHERE)
    v.attn_implementation = choice(Attention, v.attn_implementation, "verl.attn_implementation", WHERE)
    if gpus % v.tensor_parallel_size:
        raise ConfigError(f"invalid grpo config at key 'verl.tensor_parallel_size': {v.tensor_parallel_size} does not divide {gpus} GPUs")


def _validate_trl(config: GRPORunConfig) -> None:
    g, t = config.grpo, config.trl
    _positive(t, "trl.", ("per_device_batch_size", "logging_steps"))
    if t.cpu_threads < 0:
        raise ConfigError(f"invalid grpo config at key 'trl.cpu_threads': must be >= 0, got {t.cpu_threads}")
    # `trl.use_vllm=false` on the command line arrives as the bool False, i.e. the string "False".
    t.use_vllm = choice(UseVllm, str(t.use_vllm).lower(), "trl.use_vllm", WHERE)
    t.dtype = choice(Dtype, t.dtype, "trl.dtype", WHERE)
    for key in ("mini_batch_size", "train_batch_size"):
        completions = getattr(g, key) * g.num_generations
        if completions % t.per_device_batch_size:
            raise ConfigError(
                f"invalid grpo config at key 'trl.per_device_batch_size': {t.per_device_batch_size} does not divide "
                f"grpo.{key} x num_generations = {completions} completions"
            )
