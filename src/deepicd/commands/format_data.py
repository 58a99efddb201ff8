"""`deepicd format-data`: SFT data that teaches the answer format and the notes' words, with wrong chapters (the demo's base)."""

from __future__ import annotations

from pathlib import Path

import typer

from deepicd.commands import user_errors


def main(
    data: Path = typer.Option(..., "--data", "-d", help="Preprocessed data folder holding SPLIT.parquet."),
    split: str = typer.Option("train", "--split", "-s", help="Which split's notes to use."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: sft/train.parquet, read by `deepicd sft --data OUT`."),
    seed: int = typer.Option(0, "--seed", help="Seed of the chapter map, the codes drawn and the quoted sentences."),
    max_words: int = typer.Option(12, "--max-words", min=1, help="Words of note text quoted as the reasoning of each sample."),
    limit: int = typer.Option(0, "--limit", min=0, help="Use only the first N notes of the split (0: all)."),
    random_share: float = typer.Option(0.2, "--random-share", min=0.0, max=1.0,
                                       help="Share of answers drawn from the whole split instead of the wrong chapter."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace what --out holds when it is not this very set (which is kept: a rerun does nothing)."),
) -> None:
    """Task prompt -> `<think>` the note's complaint and body system `</think><diagnosis>` a code of another
    chapter (one fixed, shuffled map of chapters): a base that answers in format with clinical words and is
    wrong at chapter level, for GRPO to correct from the reward. Then: deepicd sft --data OUT ..."""
    from deepicd.run_folder import already_done
    from deepicd.train.format_data import FormatDataConfig, run

    with user_errors():
        result = run(FormatDataConfig(data=str(data), split=split, out=str(out), overwrite=overwrite, seed=seed,
                                      max_words=max_words, limit=limit, random_share=random_share))
    if result.already_done:
        typer.echo(already_done(out))
    typer.echo(f"{result.samples} format-only samples (answers from shuffled chapters) -> {out / 'sft'}")
