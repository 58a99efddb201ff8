"""`deepicd distill`: oracle-prompted teacher traces -> filtered prompt-completion SFT data."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from deepicd.commands import user_errors


def main(
    data: Path = typer.Option(..., "--data", "-d", help="Preprocessed data folder holding SPLIT.parquet (columns subject_id, hadm_id, text, first_code, codes)."),
    split: str = typer.Option("train", "--split", "-s", help="Which split to distil: train, val or test (the file DATA/SPLIT.parquet)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: traces.jsonl (resumable), sft/{train,val}.parquet, stats.json, report.md, manifest.json. Rerun with the same folder to resume."),
    backend: Optional[str] = typer.Option(None, "--backend", "-b", help="Generation backend: vllm (offline, GPUs), openai (an OpenAI-compatible server) or transformers; sets generator.backend."),
    teacher: Optional[str] = typer.Option(None, "--teacher", "-t", help="Teacher model: a model folder, a locally cached hub id, or (openai backend) the served model name; sets generator.model."),
    config: str = typer.Option("paper", "--config", "-c", help="Distill preset (configs/distill/NAME.yaml: paper, tiny-cpu) or a YAML file."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start over in --out: its traces and the sets built from them are removed first. Without it a rerun adds what is missing, and traces of another teacher, split or oracle prompt are refused."),
    allow_external_endpoint: bool = typer.Option(False, "--allow-external-endpoint", help="Allow a teacher server outside loopback/private networks. MIMIC-IV's data use agreement forbids third-party services: use only for servers you control."),
    overrides: Optional[list[str]] = typer.Argument(None, help="Config overrides as key=value, e.g. sampling.max_new_tokens=512 filters.min_words=20 generator.url=http://127.0.0.1:8000/v1 guidelines_dir=DIR."),
) -> None:
    """Have a teacher that sees the gold code write reasoning for each admission; keep the good traces as SFT data.

    Resumable: rerun the same command after a crash and only the missing admissions are generated.
    Exit codes: 3 when the backend failed on some admissions (rerun to retry them), 4 when no trace passed
    the filters.
    """
    from deepicd import config as configuration
    from deepicd.distill.run import load_distill_config, run

    with user_errors():
        # Options win over the preset; set as fields (not overrides) so paths need no quoting.
        settings = configuration.with_fields(load_distill_config(config, list(overrides or [])), {
            "data": str(data), "split": split, "out": str(out), "overwrite": True if overwrite else None,
            "generator.backend": backend, "generator.model": teacher,
            "generator.allow_external_endpoint": True if allow_external_endpoint else None,
        })
        result = run(settings)
    stats = result.stats
    table = stats["table2"]
    rejected = ", ".join(f"{reason} {count}" for reason, count in stats["rejected"].items() if count) or "none"
    failed = (f" ({result.errors_now} backend errors, the first: {result.first_error}; rerun to retry them)"
              if result.errors_now else "")
    typer.echo(
        f"{result.generated_now} new traces{failed}; {stats['generated']}/{stats['admissions']} admissions have a trace"
    )
    words = (
        f", trace words mean {table['mean_words']} min {table['min_words']} max {table['max_words']}"
        if table["samples"]
        else ""
    )
    typer.echo(
        f"kept {table['samples']} samples ({stats['sft_train']} train / {stats['sft_val']} val), "
        f"{table['unique_codes']} codes{words}; rejected: {rejected}"
    )
    typer.echo(f"wrote {result.out / 'sft'}, {result.out / 'stats.json'}, {result.out / 'report.md'}")
    if result.errors_now:
        raise typer.Exit(3)
    if stats["generated"] and not table["samples"]:
        typer.secho(
            f"error: kept none of the {stats['generated']} traces (rejected: {rejected}), so there is no SFT data. "
            "A teacher that cannot follow the oracle prompt (a tiny or untrained model) needs "
            "filters.repair_answer=true; otherwise loosen the filters named above or use a stronger teacher",
            fg=typer.colors.RED, err=True)
        raise typer.Exit(4)
