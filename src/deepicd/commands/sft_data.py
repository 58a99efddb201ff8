"""`deepicd sft-data`: outcome-only SFT data (code-only prompt -> `<diagnosis>CODE</diagnosis>`), no teacher."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from deepicd.commands import user_errors


def main(
    data: Path = typer.Option(..., "--data", "-d", help="Preprocessed data folder holding SPLIT.parquet (columns subject_id, hadm_id, text, first_code)."),
    split: str = typer.Option("train", "--split", "-s", help="Which split to turn into SFT samples: train, val or test (the file DATA/SPLIT.parquet)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: sft/train.parquet (and sft/val.parquet with --val-fraction > 0), read by `deepicd sft --data OUT`; stats.json, manifest.json."),
    val_fraction: float = typer.Option(0.0, "--val-fraction", help="Share of patients held out as SFT validation samples (sft/val.parquet); 0, as the paper's distill preset: none."),
    seed: int = typer.Option(42, "--seed", help="Seed of the patient-level train/val assignment (as `deepicd distill`'s split_seed)."),
    limit: int = typer.Option(0, "--limit", min=0, help="Use only the first N notes of the split (0: all)."),
    like: Optional[Path] = typer.Option(None, "--like", help="A `deepicd distill` output folder: keep only the notes its SFT set kept, with its train/val assignment, so both Table 4 students see the same notes (--val-fraction and --seed are then unused)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace what --out holds when it is not this very set (which is kept: a rerun does nothing)."),
) -> None:
    """Build the outcome-only SFT set of the paper's Table 4: each note's code-only prompt and its gold answer, no reasoning.

    Then: deepicd sft --data OUT ... and deepicd evaluate --code-only --model RUN/model ...
    """
    from deepicd.run_folder import already_done
    from deepicd.train.answer_only import AnswerOnlyConfig, run

    with user_errors():
        result = run(AnswerOnlyConfig(data=str(data), split=split, out=str(out), overwrite=overwrite,
                                      val_fraction=val_fraction, split_seed=seed, limit=limit, like=str(like or "")))
    if result.already_done:
        typer.echo(already_done(out))
    typer.echo(
        f"{result.train} train / {result.val} val outcome-only samples, {result.codes} codes -> {result.out / 'sft'}"
    )
