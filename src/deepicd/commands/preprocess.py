"""`deepicd preprocess`: MIMIC-IV tables -> admission-note datasets, splits, VERL rows, labels, report."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from deepicd.commands import user_errors


def main(
    mimic_dir: Path = typer.Option(..., "--mimic-dir", "-m", help="MIMIC-IV root holding hosp/{patients,admissions,diagnoses_icd}.csv.gz (e.g. physionet.org/files/mimiciv/3.1)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: {train,val,test}.parquet, verl/, labels.csv, splits.csv, manifest.json, report.md."),
    note_dir: Optional[Path] = typer.Option(None, "--note-dir", help="MIMIC-IV-Note root holding note/discharge.csv.gz (e.g. physionet.org/files/mimic-iv-note/2.2). Default: --mimic-dir."),
    config: str = typer.Option("default", "--config", "-c", help="Preset name (configs/preprocess/NAME.yaml) or a YAML file."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace --out if it exists (only once the new output is complete)."),
    overrides: Optional[list[str]] = typer.Argument(None, help="Config overrides as key=value, e.g. split.min_count=2 seed=7 progress=false."),
) -> None:
    """Build the admission-note datasets of the task from MIMIC-IV and MIMIC-IV-Note.

    Rerun into the same --out with the same settings and inputs, it does nothing and says so; with other
    settings it refuses unless --overwrite is given.
    """
    from deepicd.config import with_fields
    from deepicd.preprocess import dropped_warning, load_preprocess_config, run
    from deepicd.run_folder import already_done

    with user_errors():
        # Options win over the preset; set as fields (not overrides) so paths need no quoting.
        settings = with_fields(load_preprocess_config(config, list(overrides or [])), {
            "mimic_dir": str(mimic_dir), "out": str(out), "note_dir": str(note_dir) if note_dir else None,
            "overwrite": True if overwrite else None,
        })
        result = run(settings)
    if result.already_done:
        typer.echo(already_done(result.out))
    counts = result.counts
    warning = dropped_warning(counts, settings.warn_dropped_share)
    if warning:
        typer.secho(f"warning: {warning}", fg=typer.colors.YELLOW, err=True)
    splits = counts["splits"]
    typer.echo(
        f"kept {sum(splits.values())} admissions (train {splits['train']}, val {splits['val']}, "
        f"test {splits['test']}) -> {result.out}; see {result.out / 'report.md'}"
    )
