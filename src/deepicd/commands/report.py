"""`deepicd report`: Table 3 of the paper across several evaluation folders, Table 4 and Figure 4 when possible."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from deepicd.commands import user_errors


def main(
    runs: list[Path] = typer.Argument(..., help="Evaluation folders (holding metrics.json, or with it in eval/), or metrics.json files."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write table3.md and table3.csv (and table4.*, sft_samples_vs_f1.*) into."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a report of other evaluations in --out; the same evaluations again are kept and printed."),
    sft_stats: Optional[Path] = typer.Option(None, "--sft-stats", help="stats.json of `deepicd distill` (or its folder): draws Figure 4, per-chapter F1 of every run against the chapter's SFT samples, with the chapter terciles by sample mass."),
) -> None:
    """Line evaluations up as Table 3: macro R / P / F1 (%) per level, grouped Baselines / GRPO / SFT / SFT+GRPO.

    When an outcome-only run (`deepicd sft-data` model evaluated with --code-only) is among them, Table 4
    compares it with the reasoning+outcome fine-tunes. With --sft-stats, Figure 4 is drawn too.
    """
    from deepicd.evaluate.compare import ReportConfig, run
    from deepicd.run_folder import already_done

    with user_errors():
        result = run(ReportConfig(runs=[str(path) for path in runs], out=str(out),
                                  sft_stats=str(sft_stats) if sft_stats else "", overwrite=overwrite))
    if result.already_done:
        typer.echo(already_done(out), err=True)
    typer.echo(result.table3, nl=False)
    if result.table4 is not None:
        typer.echo("\nTable 4: reasoning + outcome against outcome only\n")
        typer.echo(result.table4, nl=False)
    if result.figure4 is not None:
        typer.echo("")
        typer.echo(result.figure4, nl=False)
    typer.echo("wrote " + ", ".join(str(path) for path in result.written), err=True)
