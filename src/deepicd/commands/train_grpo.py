"""`deepicd train-grpo`: GRPO with the paper's presets, on VERL (GPU cluster) or TRL (one device).

The VERL path composes the exact `python -m verl.trainer.main_ppo` command,
checks everything it can before any GPU work, and hands it to
`grpo_verl.train`, which runs it with live output, exports the last checkpoint
to a Hugging Face folder and records both in the manifest; `deepicd.train.grpo.run`
is that sequence. `--export` does only the export, for an existing run. This
module maps flags and prints; the work is in `deepicd.train`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from deepicd.commands import user_errors
from deepicd.errors import UserError


def main(
    config: str = typer.Option("r1-zero-qwen2.5-32b", "--config", "-c", help="GRPO preset (configs/grpo/NAME.yaml: r1-zero-qwen2.5-32b, sft-grpo-qwen2.5-7b, sft-grpo-llama3.1-8b, tiny-cpu) or a YAML file."),
    data: Optional[Path] = typer.Option(None, "--data", "-d", help="Output folder of `deepicd preprocess` (train/val parquet files and their verl/ copies)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model to start from: a Hugging Face folder or a hub id already in the local cache. Defaults to the preset's."),
    init: Optional[str] = typer.Option(None, "--init", help="An SFT model folder to continue from (SFT+GRPO): like --model, and the run is recorded as stage 'sft-grpo'."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run folder: checkpoints/, model/ (the exported Hugging Face model) and manifest.json. Rerunning with the same folder resumes."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start over in --out: its checkpoints, model and records are removed first. Without it a run continues from its last checkpoint, and a finished run with other settings is refused."),
    backend: Optional[str] = typer.Option(None, "--backend", "-b", help="Override the preset's engine: 'verl' (multi-GPU, vLLM rollouts) or 'trl' (one CPU or GPU)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="VERL: print the training command as one shell line and exit; nothing is started. Works without the model or data (notes say what is missing); plans GPU memory when verl.gpu_memory_gb is set or a GPU is present."),
    skip_preflight: bool = typer.Option(False, "--skip-preflight", help="VERL: launch without the checks (data, reward function, judge, model, GPU count)."),
    preflight_only: bool = typer.Option(False, "--preflight", help="VERL: run the checks, print them and exit (0 when all pass)."),
    no_export: bool = typer.Option(False, "--no-export", help="VERL: keep the checkpoints only; do not export a Hugging Face model after training."),
    export: Optional[Path] = typer.Option(None, "--export", help="Only export: a VERL run folder, its checkpoints/ folder or a global_step_N folder, merged into --out as a Hugging Face model."),
    step: Optional[int] = typer.Option(None, "--step", min=1, help="With --export: the global step to export (default: the latest checkpoint)."),
    overrides: Optional[list[str]] = typer.Argument(None, help="Config overrides as key=value, e.g. grpo.max_steps=100 verl.n_gpus_per_node=4 reward.preset=paper."),
) -> None:
    """Train a model with GRPO on the first-diagnosis task, as in DeepICD-R1."""
    with user_errors():
        if export is not None:
            _export(export, out, step)
            return
        from deepicd import config as configuration
        from deepicd.train import grpo
        from deepicd.train.grpo_config import load_grpo_config

        if init is not None and model is not None:
            raise UserError("give either --model or --init (an SFT model to continue from), not both")
        # Options win over the preset; set as fields (not overrides) so paths need no quoting.
        run = configuration.with_fields(load_grpo_config(config, list(overrides or [])), {
            "model": init or model, "stage": "sft-grpo" if init is not None else None, "backend": backend,
            "data": str(data) if data else None, "out": str(out) if out else None,
            "overwrite": True if overwrite else None,
        })
        grpo.require_paths(run)
        if run.backend == "trl":
            if dry_run or preflight_only:
                raise UserError("--dry-run and --preflight are for the verl backend; the trl backend runs in this process")
            typer.echo(f"GRPO with TRL: {run.name}, model {run.model}, data {run.data} -> {run.out}", err=True)
            _report_trl(grpo.run(run))
            return
        if preflight_only and skip_preflight:
            raise UserError("--preflight and --skip-preflight contradict each other")
        if dry_run:
            _dry_run(run)
            return
        if preflight_only:
            launch = grpo.prepare(run)
            _print_launch(launch)
            if launch.failed:
                raise UserError(f"preflight failed ({', '.join(launch.failed)}); nothing was started")
            return
        result = grpo.run(run, preflight=not skip_preflight, export_model=not no_export, on_prepared=_print_launch)
        if result.model_dir is not None:
            typer.echo(f"exported {result.exported_from} -> {result.model_dir}", err=True)
    if result.exit_code:
        raise typer.Exit(result.exit_code)


def _export(checkpoint: Path, out: Optional[Path], step: Optional[int]) -> None:
    from deepicd.train import grpo_verl

    if out is None:
        raise UserError("--export needs --out: the folder to write the Hugging Face model into")
    target = grpo_verl.export(checkpoint, out, step)
    typer.echo(f"exported {grpo_verl.find_checkpoint(checkpoint, step)} -> {target}")


def _report_trl(result) -> None:
    if result.already_done:
        typer.echo(f"{result.model_dir.parent} already holds this run, trained {result.steps} steps with these "
                   f"settings: nothing to do -> {result.model_dir}")
        return
    resumed = f", resumed from {result.resumed_from}" if result.resumed_from else ""
    typer.echo(
        f"trained {result.steps} steps in {result.seconds:.1f} s{resumed}; dropped {result.dropped_prompts} "
        f"over-long prompts; model -> {result.model_dir}; manifest -> {result.manifest}"
    )


def _print_fit(launch) -> None:
    for change in launch.fit_changes:
        typer.echo(f"auto_fit: {change} (the preset's setting does not fit; verl.auto_fit=false keeps it)", err=True)
    typer.echo(f"memory: {launch.memory}", err=True)


def _print_launch(launch) -> None:
    """What was decided before VERL starts: the memory plan, then each preflight check."""
    _print_fit(launch)
    for check in launch.checks:
        mark = typer.style("ok  ", fg=typer.colors.GREEN) if check.ok else typer.style("FAIL", fg=typer.colors.RED)
        typer.echo(f"{mark} {check.name}: {check.detail}", err=True)
    if not launch.failed:
        config = launch.config
        typer.echo(f"launching VERL ({config.verl.nnodes} node(s) x {config.verl.n_gpus_per_node} GPUs) -> "
                   f"{config.out}", err=True)


def _dry_run(run) -> None:
    from deepicd.train import grpo, grpo_verl

    launch = grpo.fit(run)
    _print_fit(launch)
    argv, notes = grpo_verl.dry_run_command(launch.config)
    typer.echo(grpo_verl.shell_line(argv))
    for note in notes:
        typer.echo(f"note: {note}", err=True)
