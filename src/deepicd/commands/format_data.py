"""`deepicd format-data`: SFT data that teaches the answer format with random codes (an instruct-like base)."""

from __future__ import annotations

from pathlib import Path

import typer

from deepicd.commands import user_errors


def main(
    data: Path = typer.Option(..., "--data", "-d", help="Preprocessed data folder holding SPLIT.parquet."),
    split: str = typer.Option("train", "--split", "-s", help="Which split's notes to use."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: sft/train.parquet, read by `deepicd sft --data OUT`."),
    seed: int = typer.Option(0, "--seed", help="Seed of the quoted sentences and the random codes."),
    max_words: int = typer.Option(12, "--max-words", min=1, help="Words of note text quoted as the reasoning of each sample."),
    limit: int = typer.Option(0, "--limit", min=0, help="Use only the first N notes of the split (0: all)."),
) -> None:
    """Task prompt -> `<think>` a few words of the note `</think><diagnosis>` a code of another note: the format
    and the clinical words without any knowledge of which code fits. Then: deepicd sft --data OUT ..."""
    from deepicd.train.format_data import FormatDataConfig, build

    with user_errors():
        count = build(data, split, out, FormatDataConfig(seed=seed, max_words=max_words, limit=limit))
    typer.echo(f"{count} format-only samples (random codes) -> {out / 'sft'}")
