"""`deepicd sft`: fine-tune a model on distilled prompt-completion traces with TRL's SFTTrainer."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from deepicd.commands import user_errors
from deepicd.errors import UserError


def main(
    config: str = typer.Option(..., "--config", "-c", help="SFT preset (configs/sft/NAME.yaml: qwen2.5-7b, llama3.1-8b, tiny-cpu) or a YAML file."),
    data: Optional[Path] = typer.Option(None, "--data", "-d", help="A `deepicd distill` output folder (reads sft/train.parquet and sft/val.parquet) or a folder holding train.parquet with 'prompt' and 'completion' columns."),
    model: str = typer.Option(..., "--model", "-m", help="Base model: a Hugging Face model folder or a hub id already in the local cache (nothing is downloaded). With --plan, also one of the bundled shapes (Qwen/Qwen2.5-7B-Instruct, meta-llama/Llama-3.1-8B-Instruct, ...)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run folder: checkpoints/ (resumed from automatically), model/ (final model + tokenizer), manifest.json."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start over in --out: its checkpoints, model and manifest are removed first. Without it a run continues from its last checkpoint, and a finished run with other settings is refused."),
    plan: bool = typer.Option(False, "--plan", help="Print the per-GPU memory plan on 1, 2, 4 and 8 GPUs (shipped FSDP config; GPU size from gpu_memory_gb=N or the driver) and exit; nothing is loaded."),
    overrides: Optional[list[str]] = typer.Argument(None, help="Config overrides as key=value, e.g. max_steps=500 learning_rate=1e-5 packing=true; max_length=1024 overlong=truncate cuts long samples as the published SFT did."),
) -> None:
    """Supervised fine-tuning with loss on the completion only; resumes from the last checkpoint in OUT.

    Several GPUs: accelerate launch --config_file src/deepicd/configs/accelerate/fsdp.yaml -m deepicd sft ...
    A run whose memory plan exceeds the GPU is refused before loading; --plan prints that plan.
    """
    from deepicd import config as configuration
    from deepicd.train.sft import load_sft_config, plan_report, run

    with user_errors():
        # Options win over the preset; set as fields (not overrides) so paths need no quoting.
        settings = configuration.with_fields(load_sft_config(config, list(overrides or [])), {
            "model": model, "data": str(data) if data else None, "out": str(out) if out else None,
            "overwrite": True if overwrite else None,
        })
        if plan:
            from deepicd.plan import detect_gpu_memory_gb

            for line in plan_report(settings, model, settings.gpu_memory_gb or detect_gpu_memory_gb()):
                typer.echo(line)
            return
        missing = [flag for flag, value in (("--data", data), ("--out", out)) if value is None]
        if missing:
            raise UserError(f"missing {' and '.join(missing)} (only --plan runs without them)")
        result = run(settings)
    if result is None:
        return
    if result.already_done:
        typer.echo(f"{out} already holds this run, trained {result.steps} steps with these settings: "
                   f"nothing to do -> {result.model_dir}")
        return
    losses = f"train loss {result.train_loss:.4f}" if result.train_loss is not None else "no train loss"
    if result.eval_loss is not None:
        losses += f", val loss {result.eval_loss:.4f}"
    if result.resumed_from:
        typer.echo(f"resumed from {result.resumed_from}")
    typer.echo(
        f"trained {result.steps} steps on {result.samples} samples ({_length_note(result, settings)}), "
        f"{losses}, {result.seconds:.0f} s -> {result.model_dir}"
    )


def _length_note(result, settings) -> str:
    """What max_length did to the data, in the words of the configured `overlong` rule."""
    if settings.overlong == "truncate":
        return (
            f"{result.truncated} cut to max_length={settings.max_length}, {result.dropped_too_long} dropped "
            "because the prompt alone fills it"
        )
    return f"{result.dropped_too_long} dropped as longer than max_length={settings.max_length}"
