"""`deepicd synth-mimic`: write a synthetic MIMIC-IV folder for tests, benchmarks and the CPU demo."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from deepicd.commands import user_errors


def main(
    out: Path = typer.Option(..., "--out", "-o", help="Folder to create, with hosp/{patients,admissions,diagnoses_icd}.csv.gz and note/discharge.csv.gz."),
    admissions: int = typer.Option(1000, "--admissions", "-n", min=1, help="Number of admissions (rows of admissions.csv.gz); about 6% get no discharge note and 1% no codes."),
    seed: int = typer.Option(0, "--seed", "-s", help="Random seed: the same seed and options give byte-identical files."),
    codes: Optional[int] = typer.Option(None, "--codes", "-k", min=1, help="Number of distinct first (target) codes, long-tailed. Default: one per 15 admissions, at most 6,400 (the paper's ratio and count). Use 20-50 for a CPU demo."),
    icd9_fraction: float = typer.Option(0.15, "--icd9-fraction", min=0.0, max=1.0, help="Share of admissions coded in ICD-9 (excluded by preprocess, as in the paper)."),
    length: str = typer.Option("short", "--length", help="Note length: 'short' (admission notes of about 100-250 words, for small models) or 'long' (closer to real MIMIC notes)."),
    codes_per_category: int = typer.Option(1, "--codes-per-category", min=1, help="Draw the codes in clusters of this many per category (with --categories-per-chapter), so chapter, category and full-code scores differ. 1: every code drawn on its own."),
    categories_per_chapter: int = typer.Option(1, "--categories-per-chapter", min=1, help="Categories drawn per chapter when the codes are clustered (see --codes-per-category)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace what --out holds when it is not this very data (which is kept: a rerun does nothing)."),
) -> None:
    """Write a synthetic MIMIC-IV (hosp/ + note/) with real column names, note layout and ICD-10-CM codes."""
    from tqdm import tqdm

    from deepicd.mimic.synth import SynthConfig, run
    from deepicd.run_folder import already_done

    with user_errors():
        config = SynthConfig(out=str(out), admissions=admissions, seed=seed, codes=codes, icd9_fraction=icd9_fraction,
                             length=length, codes_per_category=codes_per_category,
                             categories_per_chapter=categories_per_chapter, overwrite=overwrite)
        with tqdm(total=admissions, unit="adm", desc="synth-mimic", leave=False) as bar:
            result = run(config, progress=lambda done: bar.update(done - bar.n))
    if result.already_done:
        typer.echo(already_done(out))
        return
    typer.echo(f"wrote {admissions} synthetic admissions -> {out}")
