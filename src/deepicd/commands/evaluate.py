"""`deepicd evaluate`: score a model (generating first) or a file of completions at three ICD levels."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from deepicd.commands import user_errors
from deepicd.errors import UserError


def main(
    out: Path = typer.Option(..., "--out", "-o", help="Folder for predictions.jsonl, metrics.json, report.md, the PNG figures and manifest.json."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model folder (or locally cached hub id; for generator.backend=openai the served model name) to generate answers with. Needs --data."),
    predictions: Optional[Path] = typer.Option(None, "--predictions", "-p", help="JSONL of existing outputs instead of a model: 'gold' (code or list), 'completion' (text after the <think> prefill) or 'completions' (k samples), optional 'id'."),
    data: Optional[Path] = typer.Option(None, "--data", "-d", help="Preprocess output folder ({train,val,test}.parquet, labels.csv). Required with --model; with --predictions it supplies labels.csv and train frequencies."),
    split: Optional[str] = typer.Option(None, "--split", help="Split of --data to evaluate in --model mode (default: test); sets split=."),
    labels: Optional[str] = typer.Option(None, "--labels", help="Label space: a CSV with a 'code' column, 'train' (labels.csv of --data; the default) or 'all-splits' (first codes of train, val and test of --data, as the paper counts its classes). Sets labels=."),
    config: str = typer.Option("default", "--config", "-c", help="Evaluation preset name (configs/evaluate/NAME.yaml: default, paper, paper-llama3.1, code-only) or a YAML file."),
    code_only: bool = typer.Option(False, "--code-only", help="Ask for the code alone, with no reasoning and no <think> prefill, and read answers that way (Table 4's outcome-only models). Sets prompt=code-only prefill=''."),
    stage: Optional[str] = typer.Option(None, "--stage", help="Method of the evaluated model for `deepicd report`: baseline, grpo, sft or sft-grpo (default: the method the model's manifest records)."),
    samples: Optional[int] = typer.Option(None, "--samples", "-k", min=1, help="Answers sampled per note in --model mode (self-consistency); needs sampling.temperature > 0. Sets sampling.n=."),
    backend: Optional[str] = typer.Option(None, "--backend", help="Generation backend for --model: transformers, openai or vllm; sets generator.backend=."),
    limit: Optional[int] = typer.Option(None, "--limit", min=0, help="Evaluate only the first N notes (0: all); sets limit=."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an evaluation in --out made with other settings or inputs (generations made with the same sampling settings are reused); the same evaluation again is kept and nothing is redone."),
    overrides: Optional[list[str]] = typer.Argument(None, help="Config overrides as key=value, e.g. bootstrap.samples=200 nil_scope=all sampling.temperature=0.7."),
) -> None:
    """Score first-diagnosis predictions at chapter, category and full-code level (Table 3 metrics and more)."""
    from deepicd.config import with_fields
    from deepicd.evaluate.config import load_evaluate_config
    from deepicd.evaluate.run import run
    from deepicd.run_folder import already_done

    with user_errors():
        if predictions is not None and (samples is not None or backend is not None):
            raise UserError("--samples and --backend apply to --model mode; a predictions file brings its own samples")
        # Options win over the preset; set as fields (not overrides) so paths need no quoting.
        settings = with_fields(load_evaluate_config(config, list(overrides or [])), {
            "out": str(out), "predictions": str(predictions) if predictions else None,
            "data": str(data) if data else None, "overwrite": True if overwrite else None,
            "generator.model": model, "split": split, "stage": stage, "limit": limit, "labels": labels,
            "prompt": "code-only" if code_only else None, "prefill": "" if code_only else None,
            "sampling.n": samples, "generator.backend": backend,
        })
        result = run(settings, progress=True)
    if result.already_done:
        typer.echo(already_done(out))
    metrics = result.metrics
    typer.echo(f"{metrics['n']} notes scored -> {out}")
    typer.echo(f"{'level':<10} {'macro R':>8} {'macro P':>8} {'macro F1':>9} {'micro F1':>9}")
    for level in ("chapter", "category", "full_code"):
        s = metrics[level]
        typer.echo(
            f"{level:<10} {s['macro_recall'] * 100:8.1f} {s['macro_precision'] * 100:8.1f} "
            f"{s['macro_f1'] * 100:9.1f} {s['micro_f1'] * 100:9.1f}"
        )
    typer.echo(f"format rate {metrics['format_rate'] * 100:.1f}%")
    if metrics.get("leading_code_rate"):
        typer.echo(
            f"{metrics['leading_code_rate'] * 100:.1f}% of answers were a code followed by other text, "
            f"read as leading_code={settings.leading_code}"
        )
    dropped = metrics.get("prompt_filter", {})
    if dropped.get("max_prompt_tokens"):
        typer.echo(
            f"{dropped['dropped']} of {dropped['notes']} notes dropped: prompt longer than "
            f"{dropped['max_prompt_tokens']} tokens (max_prompt_tokens)"
        )
