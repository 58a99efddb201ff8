"""Supervised fine-tuning on distilled traces with TRL's SFTTrainer.

Why prompt-completion data: the loss must cover the assistant's reasoning and
answer, not the note. TRL's `assistant_only_loss` needs `{% generation %}` markers
that only some chat templates have (Llama 3.1's has none); with prompt-completion
rows TRL masks everything the templated prompt produces instead, which works for
any template. The distill stage writes exactly that shape: the *task* prompt
(system + note) and an assistant turn `<think>…</think>\\n<diagnosis>CODE</diagnosis>`.
The templated prompt (with generation prompt) is a prefix of the templated
conversation for ChatML (Qwen2.5) and Llama 3.1 alike; `check_template` fails fast
on a template where it is not.

Settings follow the paper (1 epoch, effective batch 32, lr 2e-5 cosine, 100
warm-up steps, weight decay 0.01, AdamW, bf16, gradient checkpointing). The
effective batch is kept whatever the number of GPUs: accumulation is derived from
`batch_size / (per_device_batch_size x processes)`. Before the tokenizer or the
weights are loaded, the run's per-GPU memory plan (`deepicd.plan`) is compared
with the GPU's size and a run that cannot fit is refused with the numbers and a
change that would fit; waiting in a queue for an out-of-memory error is the
alternative. A run resumes from the last
complete checkpoint in `--out/checkpoints`; the final model and tokenizer appear
in `--out/model` only once whole, next to a manifest.

Samples longer than `max_length` are dropped by default (`overlong: drop`); the
published SFT let TRL cut them at its default of 1,024 tokens, which
`max_length=1024 overlong=truncate` reproduces. Without a validation file the
run trains on everything and never evaluates, as the published SFT did.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from deepicd import manifest, run_folder
from deepicd.train import checkpoints
from deepicd.errors import ConfigError, UserError
from deepicd.schema import choice, require, require_given


class Precision(StrEnum):
    bf16_mixed = "bf16-mixed"  # fp32 master weights, bf16 compute (the usual recipe)
    bf16 = "bf16"  # weights in bf16 too
    fp32 = "fp32"  # CPU


class Overlong(StrEnum):
    drop = "drop"  # a sample longer than max_length is left out and counted
    truncate = "truncate"  # TRL keeps its first max_length tokens, as the published SFT did


class Device(StrEnum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


REQUIRED_COLUMNS = ("prompt", "completion")


@dataclass
class SFTRunConfig:
    """One SFT preset; shipped ones live in `configs/sft/*.yaml`."""

    name: str = "qwen2.5-7b"  # the preset's name, recorded in the manifest
    data: str = ""  # a `deepicd distill` (or sft-data, format-data) output folder, or one holding train.parquet (--data)
    model: str = ""  # base model: a Hugging Face folder or a hub id already in the local cache (--model)
    out: str = ""  # run folder: checkpoints/, model/, manifest.json (--out)
    overwrite: bool = False  # start over: remove OUT's checkpoints, model and manifest first (--overwrite)
    seed: int = 42  # seeds data order, dropout and initialisation
    epochs: float = 1.0  # passes over the training samples (fractions allowed)
    max_steps: int = -1  # > 0: stop after this many optimizer steps (overrides epochs)
    batch_size: int = 32  # effective batch: per device x accumulation x processes
    per_device_batch_size: int = 8  # samples per forward/backward pass; the rest is gradient accumulation
    learning_rate: float = 2e-5  # peak learning rate
    lr_scheduler: str = "cosine"  # any transformers scheduler name (cosine, linear, constant_with_warmup, ...)
    warmup_steps: int = 100  # linear warm-up, in optimizer steps
    weight_decay: float = 0.01  # decoupled weight decay of AdamW
    optimizer: str = "adamw_torch"  # any transformers `optim` name (adamw_torch_fused on recent GPUs)
    max_grad_norm: float = 1.0  # gradient clipping
    # bf16-mixed: fp32 master weights, bf16 compute (the usual recipe); bf16: weights in bf16 too; fp32: CPU.
    precision: str = "bf16-mixed"
    gradient_checkpointing: bool = True  # recompute activations in the backward pass to save memory
    max_length: int = 4096  # tokens of prompt + completion per sample
    # What happens to a sample longer than max_length. "drop" (default): it is left out and counted; a cut
    # sample would teach the model to stop mid-thought without an answer. "truncate": TRL keeps its first
    # max_length tokens, as the published SFT did (with TRL's default max_length of 1024); a sample whose
    # prompt alone fills max_length has no completion token left and is dropped.
    overlong: str = "drop"
    packing: bool = False  # best-fit packing into max_length rows (implies padding-free batches)
    padding_free: bool = False  # concatenate a batch into one row, no padding tokens
    attn_implementation: str = "sdpa"  # sdpa | eager | flash_attention_2 (if installed)
    device: str = "auto"  # auto | cpu | cuda
    cpu_threads: int = 0  # torch threads when training on CPU (0: torch's default); 1 is fastest on a busy machine
    logging_steps: int = 10  # log the loss every N steps
    save_steps: int = 200  # checkpoint every N steps (a rerun resumes from the last one)
    save_total_limit: int = 2  # checkpoints kept under <out>/checkpoints
    eval_steps: int = 0  # evaluate on the val set every N steps (0: once, at the end)
    dataset_num_proc: int = 1  # processes that tokenize the samples
    dataloader_num_workers: int = 0  # processes that load batches (0: the training process)
    report_to: list[str] = field(default_factory=list)  # e.g. [tensorboard]; empty: log to the console only
    # GPU size in GB (10^9 bytes, as sold: 80 for an H100) for the memory check; 0: ask the driver.
    gpu_memory_gb: float = 0.0
    check_memory: bool = True  # refuse a run whose memory plan exceeds the GPU (false: start anyway)

    def __post_init__(self) -> None:
        where = "sft config"
        self.precision = choice(Precision, self.precision, "precision", where)
        self.device = choice(Device, self.device, "device", where)
        self.overlong = choice(Overlong, self.overlong, "overlong", where)
        if self.overlong == Overlong.truncate and self.padding_free and not self.packing:
            # TRL cannot cut rows it concatenates without packing; it would train on rows over max_length.
            raise ConfigError("invalid sft config at key 'overlong': truncate needs packing=true when "
                              "padding_free=true (or overlong=drop)")
        for key in ("batch_size", "per_device_batch_size", "max_length", "logging_steps", "save_steps",
                    "dataset_num_proc"):
            require(getattr(self, key) >= 1, where, key, "must be at least 1", getattr(self, key))
        require(self.learning_rate > 0, where, "learning_rate", "must be positive", self.learning_rate)
        require(self.max_steps > 0 or self.epochs > 0, where, "epochs", "must be positive unless max_steps is set",
                self.epochs)
        for key in ("warmup_steps", "weight_decay", "eval_steps", "cpu_threads"):
            require(getattr(self, key) >= 0, where, key, "must not be negative", getattr(self, key))
        require(self.gpu_memory_gb >= 0, where, "gpu_memory_gb", "must be 0 (detect) or a size in GB",
                self.gpu_memory_gb)


def load_sft_config(name_or_path: str, overrides: list[str] | tuple[str, ...] = ()) -> SFTRunConfig:
    """An SFT preset by name (`qwen2.5-7b`, `llama3.1-8b`, `tiny-cpu`) or YAML path, checked when built."""
    from deepicd.config import load

    return load(SFTRunConfig, "sft", name_or_path, overrides)


@dataclass
class SFTResult:
    model_dir: Path
    steps: int
    train_loss: float | None
    eval_loss: float | None
    samples: int
    dropped_too_long: int
    seconds: float
    truncated: int = 0  # samples cut to max_length (overlong=truncate)
    resumed_from: str | None = None  # the checkpoint this run continued from
    already_done: bool = False  # OUT held this run, finished: nothing was trained (a rerun is a no-op)


def accumulation_steps(config: SFTRunConfig, processes: int) -> int:
    """Gradient accumulation that keeps the effective batch at `batch_size` on `processes` devices."""
    per_step = config.per_device_batch_size * processes
    if config.batch_size % per_step:
        raise UserError(
            f"invalid sft config at key 'batch_size': {config.batch_size} is not a multiple of "
            f"per_device_batch_size x processes = {config.per_device_batch_size} x {processes}"
        )
    return config.batch_size // per_step


# -- memory plan -----------------------------------------------------------------
# The shipped accelerate config: what `--plan` assumes when not started by `accelerate launch`.
FSDP_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "accelerate" / "fsdp.yaml"
PLAN_PROCESSES = (1, 2, 4, 8)  # GPUs of one node that the fixes and `--plan` consider


@dataclass(frozen=True)
class Launch:
    """How the processes share the model: what the memory plan needs to know about the launcher."""

    processes: int
    fsdp: bool  # parameters, gradients and optimizer sharded over the processes
    offload: bool  # FSDP keeps parameters, gradients and optimizer state in CPU memory
    activation_checkpointing: bool  # FSDP checkpoints every decoder layer


def launch_from_environment(processes: int) -> Launch:
    """The launch `accelerate launch` describes to its workers through environment variables."""
    env = os.environ
    fsdp = env.get("ACCELERATE_USE_FSDP") == "true"
    return Launch(
        processes=processes,
        fsdp=fsdp,
        offload=fsdp and env.get("FSDP_OFFLOAD_PARAMS") == "true",
        activation_checkpointing=_fsdp_does_checkpointing(),
    )


def launch_from_fsdp_config(processes: int, path: Path = FSDP_CONFIG) -> Launch:
    """The launch the shipped accelerate FSDP config would make on `processes` GPUs."""
    from omegaconf import OmegaConf

    fsdp = OmegaConf.to_container(OmegaConf.load(path)).get("fsdp_config", {})
    return Launch(
        processes=processes,
        fsdp=True,
        offload=bool(fsdp.get("fsdp_offload_params", False)),
        activation_checkpointing=bool(fsdp.get("fsdp_activation_checkpointing", False)),
    )


def _state_bytes(config: SFTRunConfig) -> dict:
    """Bytes per parameter of the weights, gradients and optimizer, and of the compute dtype."""
    if config.precision == "fp32":
        weights, compute = 4, 4
    elif config.precision == "bf16":
        weights, compute = 2, 2
    else:  # bf16-mixed: fp32 masters, bf16 compute
        weights, compute = 4, 2
    # AdamW keeps two moments in the weights' dtype; 8-bit variants one byte each.
    moments = 2 if "8bit" in config.optimizer else 2 * weights
    return {"param_bytes": weights, "grad_bytes": weights, "optimizer_bytes": moments, "compute_dtype_bytes": compute}


def memory_plan(config: SFTRunConfig, shape, launch: Launch):
    """Per-GPU memory of one training step of `config` on `launch` (a `deepicd.plan.TrainingMemory`)."""
    from deepicd.plan import fsdp_training_memory

    return fsdp_training_memory(
        shape,
        world_size=launch.processes if launch.fsdp else 1,  # without FSDP every process holds everything
        micro_batch_size=config.per_device_batch_size,
        sequence_length=config.max_length,
        gradient_checkpointing=config.gradient_checkpointing or launch.activation_checkpointing,
        param_offload=launch.offload,
        optimizer_offload=launch.offload,
        **_state_bytes(config),
    )


def memory_fixes(config: SFTRunConfig, shape, launch: Launch, gpu_memory_gb: float) -> list[str]:
    """Single changes that make the plan fit, each with its per-GPU figure: more GPUs, a smaller
    micro-batch (more accumulation, same effective batch), or CPU offload."""
    fixes = []
    more = [p for p in PLAN_PROCESSES if p > launch.processes or (not launch.fsdp and p == launch.processes > 1)]
    for processes in more:
        if config.batch_size % (config.per_device_batch_size * processes):
            continue
        plan = memory_plan(config, shape, dataclasses.replace(launch, processes=processes, fsdp=True))
        if plan.fits(gpu_memory_gb):
            fixes.append(
                f"launch {processes} processes (accelerate launch --config_file src/deepicd/configs/accelerate/fsdp.yaml "
                f"--num_processes {processes}: {plan.total_gib:.1f} GiB per GPU)"
            )
            break
    for micro in range(config.per_device_batch_size - 1, 0, -1):
        if config.batch_size % (micro * launch.processes):
            continue
        smaller = dataclasses.replace(config, per_device_batch_size=micro)
        plan = memory_plan(smaller, shape, launch)
        if plan.fits(gpu_memory_gb):
            accumulation = config.batch_size // (micro * launch.processes)
            fixes.append(f"per_device_batch_size={micro} (accumulation {accumulation}: {plan.total_gib:.1f} GiB per GPU)")
            break
    if not launch.offload:
        plan = memory_plan(config, shape, dataclasses.replace(launch, fsdp=True, offload=True))
        if plan.fits(gpu_memory_gb):
            fixes.append(
                "fsdp_offload_params: true in the accelerate FSDP config (parameters, gradients and optimizer "
                f"in CPU memory, much slower: {plan.total_gib:.1f} GiB per GPU)"
            )
    return fixes


def gpu_memory_to_check(config: SFTRunConfig) -> float | None:
    """The GPU size (GB) to plan against: the config's, else the driver's; None on CPU runs."""
    if config.device == "cpu" or not config.check_memory:
        return None
    if config.gpu_memory_gb > 0:
        return config.gpu_memory_gb
    from deepicd.plan import detect_gpu_memory_gb

    return detect_gpu_memory_gb()


def check_memory(config: SFTRunConfig, model: str | Path, launch: Launch, gpu_memory_gb: float | None):
    """Refuse, before anything is loaded, a run whose plan exceeds `gpu_memory_gb`; None = no check.

    Returns the plan when one was made. The plan errs high (see
    `deepicd.plan.fsdp_training_memory`), so the message also says how to start anyway.
    A model the planner cannot size (a mixture of experts, say) is trained unchecked.
    """
    if gpu_memory_gb is None:
        return None
    from deepicd.plan import model_shape, refusal_message

    try:
        shape = model_shape(model)
    except UserError as exc:
        print(f"memory plan skipped: {exc}", file=sys.stderr, flush=True)
        return None
    plan = memory_plan(config, shape, launch)
    if not plan.fits(gpu_memory_gb):
        how = "FSDP" if launch.fsdp else "no FSDP"
        offload = ", CPU offload" if launch.offload else ""
        raise UserError(
            refusal_message(
                f"sft preset {config.name!r} for {shape.name} on {launch.processes} process(es) ({how}{offload})",
                plan.explain(gpu_memory_gb),
                memory_fixes(config, shape, launch, gpu_memory_gb),
            )
            + " The estimate is conservative; check_memory=false starts the run anyway."
        )
    return plan


def plan_report(config: SFTRunConfig, model: str | Path, gpu_memory_gb: float | None) -> list[str]:
    """`deepicd sft --plan`: the memory plan of `config` on 1-8 GPUs under the shipped FSDP config."""
    from deepicd.plan import model_shape

    shape = model_shape(model)
    lines = [f"{shape.name}: {shape.num_parameters / 1e9:.2f}B parameters, preset {config.name!r}, "
             f"{config.max_length} tokens per row, effective batch {config.batch_size}"]
    for processes in PLAN_PROCESSES:
        try:
            accumulation = accumulation_steps(config, processes)
        except UserError:
            lines.append(f"{processes} process(es): batch_size {config.batch_size} does not split into "
                         f"{config.per_device_batch_size} x {processes} x accumulation")
            continue
        launch = launch_from_fsdp_config(processes)
        plan = memory_plan(config, shape, launch)
        lines.append(f"{processes} process(es), accumulation {accumulation}: {plan.explain(gpu_memory_gb)}")
        if gpu_memory_gb and not plan.fits(gpu_memory_gb):
            fixes = memory_fixes(config, shape, launch, gpu_memory_gb)
            lines.append("    fix: " + ("; or ".join(fixes) if fixes else "none of more GPUs, a smaller micro-batch or offload"))
    return lines


# -- data ------------------------------------------------------------------------
def data_files(data: str | Path) -> tuple[Path, Path | None]:
    """train (and val, if present) parquet: in DATA/sft/ (a distill output folder) or DATA/ itself."""
    data = Path(data)
    if not data.is_dir():
        raise UserError(f"data folder not found: {data}")
    for folder in (data / "sft", data):
        train = folder / "train.parquet"
        if train.is_file():
            val = folder / "val.parquet"
            return train, (val if val.is_file() else None)
    raise UserError(f"no train.parquet in {data} or {data / 'sft'}; run `deepicd distill` first")


def load_table(path: Path):
    """A prompt-completion parquet as a `datasets.Dataset` with only the two columns TRL reads."""
    import pyarrow.parquet as pq
    from datasets import Dataset

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise UserError(f"cannot read {path}: {exc}") from exc
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise UserError(f"{path} lacks column(s) {', '.join(missing)}; it has {', '.join(table.column_names)}")
    return Dataset(table.select(list(REQUIRED_COLUMNS)))


def check_template(tokenizer, example: dict) -> None:
    """Fail fast when the templated prompt is not a prefix of the templated conversation.

    Completion-only loss masks the prompt's tokens; if the template renders the
    prompt differently once a reply follows (some templates move or drop text),
    the model would be trained on a context it never sees at inference.
    """
    prompt = tokenizer.apply_chat_template(list(example["prompt"]), tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(list(example["prompt"]) + list(example["completion"]), tokenize=False)
    if not full.startswith(prompt):
        raise UserError(
            f"the chat template of {tokenizer.name_or_path!r} renders the prompt differently when a reply follows; "
            "completion-only loss needs the prompt to be a prefix. Use a model whose template keeps it (Qwen2.5, Llama 3.1)."
        )


@dataclass(frozen=True)
class LengthReport:
    """What `fit_to_max_length` did to the samples that did not fit."""

    dropped: int = 0  # left out: longer than max_length (drop), or prompt alone fills it (truncate)
    truncated: int = 0  # kept for TRL to cut to their first max_length tokens (truncate)


def _sample_lengths(tokenizer, prompt_too: bool):
    """A `datasets.map` function adding the token length of the templated sample (and of its prompt)."""

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    def lengths(example):
        prompt, completion = list(example["prompt"]), list(example["completion"])
        row = {"_length": count(tokenizer.apply_chat_template(prompt + completion, tokenize=False))}
        if prompt_too:
            row["_prompt_length"] = count(tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True))
        return row

    return lengths


def fit_to_max_length(dataset, tokenizer, max_length: int, overlong: str, num_proc: int):
    """The samples to train on under `overlong`, and a count of what happened to the long ones.

    drop: only samples whose templated prompt + completion fit in `max_length`
    tokens are kept. truncate: every sample is kept for TRL to cut to its first
    `max_length` tokens, except those whose prompt alone fills `max_length`: no
    completion token would be left, so they carry no loss (TRL drops them too,
    here they are counted).
    """
    procs = num_proc if num_proc > 1 else None
    truncate = overlong == "truncate"
    measured = dataset.map(_sample_lengths(tokenizer, truncate), num_proc=procs, desc="Measuring lengths")
    if truncate:
        kept = measured.filter(lambda example: example["_prompt_length"] < max_length, num_proc=procs)
        report = LengthReport(
            dropped=len(measured) - len(kept), truncated=sum(1 for n in kept["_length"] if n > max_length)
        )
        return kept.remove_columns(["_length", "_prompt_length"]), report
    kept = measured.filter(lambda example: example["_length"] <= max_length, num_proc=procs)
    return kept.remove_columns("_length"), LengthReport(dropped=len(measured) - len(kept))


def prepare_datasets(train_path: Path, val_path: Path | None, tokenizer, config: SFTRunConfig):
    """(train, val or None, LengthReport): the samples TRL gets, after the template check and length rule.

    No val.parquet, or an empty one, means no validation set: the trainer then
    never evaluates (the paper preset of `deepicd distill` writes none).
    """
    train = load_table(train_path)
    if len(train) == 0:
        raise UserError(f"{train_path} holds no samples; check the distill report for what was filtered")
    check_template(tokenizer, train[0])
    train, lengths = fit_to_max_length(train, tokenizer, config.max_length, config.overlong, config.dataset_num_proc)
    if len(train) == 0:
        raise UserError(
            f"no sample of {train_path} fits max_length={config.max_length} tokens (overlong={config.overlong}); "
            "raise max_length"
        )
    val = load_table(val_path) if val_path is not None else None
    if val is not None and len(val):
        val = fit_to_max_length(val, tokenizer, config.max_length, config.overlong, config.dataset_num_proc)[0]
    return train, (val if val is not None and len(val) else None), lengths


# -- the stage ---------------------------------------------------------------------
def _fsdp_does_checkpointing() -> bool:
    # `accelerate launch` with an FSDP config announces it to the worker processes like this.
    return os.environ.get("ACCELERATE_USE_FSDP") == "true" and os.environ.get("FSDP_ACTIVATION_CHECKPOINTING") == "true"


def _trl_max_length(config: SFTRunConfig) -> int | None:
    """The max_length handed to TRL, which truncates rows to it (and packs into rows of it).

    TRL refuses a max_length for padding-free batches without packing, since it
    cannot cut those. Only overlong=drop allows that combination (see `SFTRunConfig.__post_init__`),
    and there every sample already fits, so TRL is given no length to enforce.
    """
    if config.padding_free and not config.packing:
        return None
    return config.max_length


def uses_cpu(config: SFTRunConfig) -> bool:
    """Whether the run trains on the CPU: `device: cpu`, or `auto` without a CUDA GPU."""
    import torch

    return config.device == "cpu" or (config.device == "auto" and not torch.cuda.is_available())


# How each setting reaches TRL's SFTConfig. deepicd's training settings share one vocabulary across stages
# (GRPO's `epochs`, `per_device_batch_size` and `learning_rate` are the same words), so TRL's own names
# appear only here; tests/sft/test_sft_train.py checks that every field is in exactly one group and that
# TRL holds each value handed over.
TRL_SAME_NAME = ("seed", "max_steps", "learning_rate", "warmup_steps", "weight_decay", "max_grad_norm", "packing",
                 "padding_free", "logging_steps", "save_steps", "save_total_limit", "dataset_num_proc",
                 "dataloader_num_workers")
TRL_RENAMED = {"epochs": "num_train_epochs", "per_device_batch_size": "per_device_train_batch_size",
               "lr_scheduler": "lr_scheduler_type", "optimizer": "optim"}
# Handed over in another form, worked out in `build_sft_config` (accumulation, bf16, use_cpu, ...).
TRL_DERIVED = ("batch_size", "precision", "device", "gradient_checkpointing", "max_length", "attn_implementation",
               "eval_steps", "report_to")
# Read by deepicd alone: paths, the run folder rule, the sample-length rule, the memory check.
DEEPICD_ONLY = ("name", "data", "model", "out", "overwrite", "overlong", "cpu_threads", "gpu_memory_gb",
                "check_memory")


def build_sft_config(config: SFTRunConfig, output_dir: Path, processes: int, has_eval: bool):
    """The TRL SFTConfig for a preset (field names checked against trl 1.16)."""
    import torch
    from trl import SFTConfig

    use_cpu = uses_cpu(config)
    if config.device == "cuda" and not torch.cuda.is_available():
        raise UserError("sft config asks for device=cuda but no CUDA GPU is available; use device=cpu")
    bf16 = config.precision in ("bf16", "bf16-mixed")
    if bf16 and use_cpu:
        raise UserError("bf16 training on CPU is slow and poorly supported; use precision=fp32 (the tiny-cpu preset)")
    eval_strategy = "no"
    if has_eval and config.eval_steps > 0:
        eval_strategy = "steps"
    return SFTConfig(
        **{name: getattr(config, name) for name in TRL_SAME_NAME},
        **{trl_name: getattr(config, name) for name, trl_name in TRL_RENAMED.items()},
        output_dir=str(output_dir),
        data_seed=config.seed,
        per_device_eval_batch_size=config.per_device_batch_size,
        gradient_accumulation_steps=accumulation_steps(config, processes),
        bf16=bf16,
        use_cpu=use_cpu,
        gradient_checkpointing=config.gradient_checkpointing and not _fsdp_does_checkpointing(),
        max_length=_trl_max_length(config),
        completion_only_loss=True,
        assistant_only_loss=False,
        model_init_kwargs={
            "dtype": "bfloat16" if config.precision == "bf16" else "float32",
            "attn_implementation": config.attn_implementation,
            "device_map": None,  # the trainer / FSDP places the weights, never "auto" across GPUs
        },
        save_strategy="steps",
        eval_strategy=eval_strategy,
        eval_steps=config.eval_steps if eval_strategy == "steps" else None,
        report_to=list(config.report_to) or "none",
        disable_tqdm=False,
    )


# What a run leaves in OUT; `overwrite` removes these before it starts over.
RUN_ENTRIES = ("checkpoints", "model", "manifest.json")


def run(config: SFTRunConfig) -> SFTResult | None:
    """Fine-tune MODEL on DATA's prompt-completion samples; write OUT/model and OUT/manifest.json.

    A run continues from OUT's last complete checkpoint; a finished run with the
    same settings is returned as it is, and one with other settings is refused
    unless `overwrite`, which starts over. Returns the result on the main
    process, None on the other ranks of a multi-GPU run.
    """
    started = time.perf_counter()
    from accelerate import PartialState
    from transformers import set_seed
    from trl import SFTTrainer

    from deepicd import models

    require_given(config, "sft config", {"data": "--data", "model": "--model", "out": "--out"})
    set_seed(config.seed)
    train_path, val_path = data_files(config.data)
    out, model = Path(config.out), config.model
    run_folder.refuse_overlap([out / name for name in RUN_ENTRIES], {"model": model, "train": train_path,
                                                                     "val": val_path})
    # The process group the trainer will use: on the CPU only `cpu=True` joins the ranks of a multi-process
    # launch (without it every rank is its own main process, and all of them would write OUT).
    state = PartialState(cpu=uses_cpu(config))
    if state.is_main_process:
        run_folder.start_resumable(out, RUN_ENTRIES, overwrite=config.overwrite)
    state.wait_for_everyone()
    final = checkpoints.last_complete(out / "checkpoints")
    if final is not None and checkpoints.is_final(final, config.max_steps):
        return already_trained(out, config, final) if state.is_main_process else None
    source = models.resolve(model)  # a local folder, or a hub id already in the cache; never a download
    check_memory(config, source, launch_from_environment(state.num_processes), gpu_memory_to_check(config))
    tokenizer = models.load_tokenizer(source, purpose="train")

    train, val, lengths = prepare_datasets(train_path, val_path, tokenizer, config)

    args = build_sft_config(config, out / "checkpoints", state.num_processes, has_eval=val is not None)
    if args.use_cpu and config.cpu_threads:
        import torch

        torch.set_num_threads(config.cpu_threads)
    trainer = SFTTrainer(model=source, args=args, train_dataset=train, eval_dataset=val, processing_class=tokenizer)
    resume = final  # not the last step (checked above): the run continues from there
    if resume is not None and state.is_main_process:
        print(f"resuming from {resume}", file=sys.stderr, flush=True)
    output = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    eval_loss = trainer.evaluate()["eval_loss"] if val is not None else None

    model_dir = out / "model"
    if trainer.is_fsdp_enabled:  # gather the shards into one Hugging Face state dict for the final save
        trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
    staging = shared_staging(model_dir, state)
    result = None
    try:
        trainer.save_model(str(staging))  # every rank takes part in saving a sharded model
        state.wait_for_everyone()  # every rank's part is written before the folder moves
        if state.is_main_process:
            tokenizer.save_pretrained(staging)
            manifest.commit_staging(staging, model_dir)
    except BaseException:
        if state.is_main_process:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    if state.is_main_process:
        result = SFTResult(
            model_dir=model_dir,
            steps=output.global_step,
            # The trainer's own figure is wrong after a resume (see deepicd.train.checkpoints).
            train_loss=checkpoints.mean_loss(trainer.state.log_history) or output.training_loss,
            eval_loss=eval_loss,
            samples=len(train),
            dropped_too_long=lengths.dropped,
            truncated=lengths.truncated,
            seconds=time.perf_counter() - started,
            resumed_from=str(resume) if resume else None,
        )
        write_manifest(out, config, source, (train_path, val_path), result, args.gradient_accumulation_steps, state.num_processes)
    state.wait_for_everyone()
    return result


def shared_staging(target: Path, state) -> Path:
    """The main rank's staging folder for `target` (`manifest.new_staging`), known to every rank.

    The final save is collective under FSDP, so all ranks write into one folder;
    only the main rank creates it and later renames it onto `target`.
    """
    from accelerate.utils import broadcast_object_list

    name = [str(manifest.new_staging(target)) if state.is_main_process else None]
    broadcast_object_list(name)
    return Path(name[0])


def already_trained(out: Path, config: SFTRunConfig, final: Path) -> SFTResult:
    """OUT's run reached its last step: its recorded result, or why it cannot be reused. Nothing is trained."""
    done = checkpoints.finished_record(out, final, "sft", dataclasses.asdict(config))["result"]
    return SFTResult(model_dir=out / "model", steps=done["steps"], train_loss=done["train_loss"],
                     eval_loss=done["eval_loss"], samples=done["samples"], dropped_too_long=done["dropped_too_long"],
                     seconds=0.0, truncated=done.get("truncated", 0), resumed_from=done.get("resumed_from"),
                     already_done=True)


def write_manifest(
    out: Path, config: SFTRunConfig, source: str, files: tuple, result: SFTResult, accumulation: int, processes: int
) -> None:
    """OUT/manifest.json: what produced OUT/model (config, versions, data checksums, seed, outcome).

    The data folder's `prompts` record (the distillation's oracle prompt, or
    sft-data's outcome-only target) is carried over: evaluation reads it to tell
    Table 4's two kinds of student apart.
    """
    train_path, val_path = files
    upstream = manifest.read(train_path.parent.parent / manifest.FILE).get("prompts")
    entry = manifest.record(
        "sft", method="sft", config=dataclasses.asdict(config), seed=config.seed,
        inputs={"train": train_path, "val": val_path, "model": source}, prompts=upstream,
        result={"model": str(result.model_dir), "steps": result.steps, "resumed_from": result.resumed_from,
                "train_loss": result.train_loss, "eval_loss": result.eval_loss, "samples": result.samples,
                "dropped_too_long": result.dropped_too_long, "truncated": result.truncated,
                "processes": processes, "gradient_accumulation_steps": accumulation,
                "seconds": round(result.seconds, 1)},
    )
    manifest.write(out, entry, outputs=manifest.describe_outputs(out, ["model"], hashed=False))
