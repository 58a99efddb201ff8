"""GRPO on one device with TRL: the same config, data and reward as the VERL run, on a CPU or one GPU.

What this backend is for: a run that fits one GPU (a small model, a debugging
run, a demo) or the CPU test that proves the whole loop works. It reads the
preset's engine-neutral hyper-parameters, so `tiny-cpu` and the paper presets
are the same kind of object.

How the pieces map onto TRL:
- Prompts are rendered to text here (chat template, generation prompt, the
  `<think>` prefill) and given to TRL as standard text prompts; the gold code
  and the note ride along as dataset columns the reward functions read.
  Prompts longer than `max_prompt_length` tokens are dropped, as VERL's
  `filter_overlong_prompts` does (TRL 1.16 has no prompt-length limit).
- `train_batch_size` prompts x `num_generations` completions are generated
  per step, and the optimizer steps once per `mini_batch_size` prompts:
  TRL's `steps_per_generation` and `gradient_accumulation_steps` in
  micro-batches of `trl.per_device_batch_size` completions.
- Every reward component is its own reward function (`rewards/<name>/mean`).
- Generation uses vLLM in colocate mode when it is installed and a GPU is
  present, otherwise transformers' `generate`.
- A rerun with the same `--out` resumes from the last checkpoint there; a rerun of a finished run
  trains nothing and reports the recorded result (`deepicd.train.checkpoints`).
The final model and tokenizer go to `<out>/model`, with `<out>/manifest.json`.
"""

from __future__ import annotations

import importlib.util
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from deepicd.errors import UserError
from deepicd.train.grpo_config import GRPORunConfig

VERSIONED = ("deepicd", "torch", "transformers", "trl", "accelerate", "datasets", "vllm", "tokenizers")


@dataclass
class TrlRunResult:
    model_dir: Path
    manifest: Path
    steps: int
    dropped_prompts: int
    resumed_from: str | None
    seconds: float
    already_done: bool = False  # OUT held this run, finished: nothing was trained (a rerun is a no-op)


def use_vllm(setting: str) -> bool:
    import torch

    if setting == "false":
        return False
    available = importlib.util.find_spec("vllm") is not None and torch.cuda.is_available()
    if setting == "true" and not available:
        raise UserError("trl.use_vllm=true, but vllm is not installed or no GPU is present; use trl.use_vllm=auto")
    return available


def _adds_bos(tokenizer) -> bool:
    bos = tokenizer.bos_token_id
    return bos is not None and tokenizer("a")["input_ids"][:1] == [bos]


def build_dataset(config: GRPORunConfig, tokenizer, prefill: str):
    """The training split as TRL rows (`prompt` text, `gold`, `note`, `hadm_id`) and how many were too long."""
    from datasets import Dataset

    from deepicd.train.data import find_split, read_examples, render_prompt

    path = find_split(config.data, "train")
    examples = read_examples(path, config.max_train_samples)
    # TRL tokenizes text prompts with the tokenizer's special tokens; a template that already
    # starts with BOS (Llama 3) would otherwise get it twice.
    strip_bos = tokenizer.bos_token if _adds_bos(tokenizer) else None
    rows, dropped = [], 0
    for example in examples:
        text = render_prompt(tokenizer, example.messages, prefill)
        if strip_bos and text.startswith(strip_bos):
            text = text[len(strip_bos):]
        if len(tokenizer(text)["input_ids"]) > config.grpo.max_prompt_length:
            dropped += 1
            continue
        rows.append({"prompt": text, "gold": example.gold, "note": example.note, "hadm_id": example.hadm_id})
    if not rows:
        raise UserError(
            f"{path}: all {len(examples)} prompts are longer than grpo.max_prompt_length="
            f"{config.grpo.max_prompt_length} tokens"
        )
    return Dataset.from_list(rows), path, dropped


def grpo_args(config: GRPORunConfig, output_dir: Path, vllm: bool):
    """TRL's GRPOConfig from the engine-neutral hyper-parameters."""
    import torch
    from trl import GRPOConfig

    g, t = config.grpo, config.trl
    cuda = torch.cuda.is_available()
    micro = t.per_device_batch_size
    bf16 = g.bf16 and cuda and torch.cuda.is_bf16_supported() and t.dtype != "float32"
    return GRPOConfig(
        output_dir=str(output_dir),
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=g.mini_batch_size * g.num_generations // micro,
        steps_per_generation=g.train_batch_size * g.num_generations // micro,
        num_generations=g.num_generations,
        max_completion_length=g.max_completion_length,
        temperature=g.temperature,
        top_p=g.top_p,
        learning_rate=g.learning_rate,
        lr_scheduler_type="constant_with_warmup",
        warmup_steps=g.warmup_steps,
        num_train_epochs=g.epochs,
        max_steps=g.max_steps,
        beta=g.kl_loss_coef,
        entropy_coef=g.entropy_coef,
        epsilon=g.clip_ratio,
        scale_rewards=str(g.advantage_scale),
        loss_type=t.loss_type,
        bf16=bf16,
        use_cpu=not cuda,
        gradient_checkpointing=g.gradient_checkpointing and cuda,
        logging_steps=t.logging_steps,
        save_strategy="steps",
        save_steps=g.save_steps,
        save_total_limit=t.save_total_limit,
        report_to=list(t.report_to),
        log_completions=t.log_completions,
        seed=g.seed,
        data_seed=g.seed,
        use_vllm=vllm,
        vllm_mode="colocate",
        vllm_gpu_memory_utilization=t.vllm_gpu_memory_utilization,
        vllm_max_model_length=g.max_prompt_length + g.max_completion_length,
        dataloader_num_workers=0,
    )


def already_trained(config: GRPORunConfig, final: Path) -> TrlRunResult:
    """OUT's run reached its last step: its recorded result, or why it cannot be reused. Nothing is trained."""
    from deepicd.train import checkpoints

    out = Path(config.out)
    record = checkpoints.finished_record(out, final, "train-grpo", asdict(config))
    done = record["result"]
    return TrlRunResult(out / "model", out / "manifest.json", done["global_step"], done["dropped_too_long"],
                        done["resumed_from"], 0.0, already_done=True)


def _model_dtype(config: GRPORunConfig) -> str:
    import torch

    if config.trl.dtype != "auto":
        return config.trl.dtype
    return "bfloat16" if config.grpo.bf16 and torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "float32"


def _save(trainer, tokenizer, target: Path) -> None:
    """Save model and tokenizer to `target` via a temporary folder, so `target` is never half-written."""
    from deepicd.manifest import staged_directory

    with staged_directory(target) as staging:
        trainer.save_model(str(staging))
        tokenizer.save_pretrained(str(staging))


def train(config: GRPORunConfig) -> TrlRunResult:
    """Run GRPO with TRL on one device; resume from `<out>/checkpoints` when a checkpoint is there."""
    import torch

    threads = torch.get_num_threads()
    if not torch.cuda.is_available() and config.trl.cpu_threads:
        torch.set_num_threads(config.trl.cpu_threads)
    try:
        return _train(config)
    finally:
        torch.set_num_threads(threads)


# What a run leaves in OUT; `overwrite` removes these before it starts over.
RUN_ENTRIES = ("checkpoints", "model", "manifest.json", "reward_log.jsonl", "reward_curves.png")


def _train(config: GRPORunConfig) -> TrlRunResult:
    import torch
    from transformers import set_seed
    from trl import GRPOTrainer

    from deepicd import models
    from deepicd import manifest, run_folder
    from deepicd.prompts import task
    from deepicd.rewards.config import load_reward_config
    from deepicd.rewards.trl_entry import reward_functions
    from deepicd.train import checkpoints, grpo_memory, reward_curves

    if torch.cuda.is_available() and torch.cuda.device_count() > 1:
        raise UserError(
            f"the trl backend trains on one device, but {torch.cuda.device_count()} GPUs are visible; "
            "pick one with CUDA_VISIBLE_DEVICES=0, or use the verl backend for several GPUs"
        )
    started, started_at = time.perf_counter(), manifest.now()
    out = Path(config.out)
    run_folder.refuse_overlap([out / name for name in RUN_ENTRIES], {"model": config.model, "data": config.data})
    run_folder.start_resumable(out, RUN_ENTRIES, overwrite=config.overwrite)
    output_dir = out / "checkpoints"
    final = checkpoints.last_complete(output_dir)
    if final is not None and checkpoints.is_final(final, config.grpo.max_steps):
        return already_trained(config, final)
    set_seed(config.grpo.seed)
    reward_config = load_reward_config(config.reward.preset, list(config.reward.overrides))
    vllm = use_vllm(config.trl.use_vllm)
    grpo_memory.check_trl(config, with_vllm=vllm, bf16=_model_dtype(config) == "bfloat16")
    tokenizer = models.load_tokenizer(config.model, purpose="generate")
    model = models.load_causal_lm(config.model, dtype=_model_dtype(config), device="cpu")
    dataset, data_path, dropped = build_dataset(config, tokenizer, reward_config.prefill)
    args = grpo_args(config, output_dir, vllm)
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=reward_functions(reward_config),
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    resume = str(final) if final is not None else None  # not the last step (checked above): continue from there
    trainer.train(resume_from_checkpoint=resume)
    model_dir = out / "model"
    _save(trainer, tokenizer, model_dir)
    history = trainer.state.log_history
    log_path, figure = reward_curves.write(history, out)
    entry = manifest.record(
        "train-grpo", method=config.stage, config=asdict(config), seed=config.grpo.seed, created=started_at,
        inputs={"train": data_path, "model": config.model}, prompts={"task": task.VERSION},
        result={"backend": "trl", "model": str(model_dir), "global_step": trainer.state.global_step,
                "resumed_from": resume, "rows": len(dataset), "dropped_too_long": dropped, "use_vllm": vllm,
                "device": str(trainer.accelerator.device), "reward": asdict(reward_config),
                "last_logs": _last_logs(history), "reward_log": log_path.name,
                "reward_curves": figure.name if figure else None},
        packages=VERSIONED,
    )
    manifest_path = manifest.write(out, entry, outputs=manifest.describe_outputs(out, ["model"], hashed=False))
    return TrlRunResult(model_dir, manifest_path, trainer.state.global_step, dropped, resume,
                        time.perf_counter() - started)


def _last_logs(history: list[dict[str, Any]], keep: int = 3) -> list[dict[str, Any]]:
    return [entry for entry in history if "loss" in entry or "reward" in entry][-keep:]
