"""`deepicd report`: Table 3 of the paper across several evaluation folders, Table 4 and Figure 4 when possible."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from deepicd.commands import user_errors


def main(
    runs: list[Path] = typer.Argument(..., help="Evaluation folders (holding metrics.json, or with it in eval/), or metrics.json files."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write table3.md and table3.csv (and table4.*, sft_samples_vs_f1.*) into."),
    sft_stats: Optional[Path] = typer.Option(None, "--sft-stats", help="stats.json of `deepicd distill` (or its folder): draws Figure 4, per-chapter F1 of every run against the chapter's SFT samples, with the chapter terciles by sample mass."),
) -> None:
    """Line evaluations up as Table 3: macro R / P / F1 (%) per level, grouped Baselines / GRPO / SFT / SFT+GRPO.

    When an outcome-only run (`deepicd sft-data` model evaluated with --code-only) is among them, Table 4
    compares it with the reasoning+outcome fine-tunes. With --sft-stats, Figure 4 is drawn too.
    """
    from deepicd.evaluate import figure4, table, table4

    with user_errors():
        loaded = table.load_runs(list(runs))
        markdown, md_path, csv_path = table.write(loaded, out)
        fourth = table4.write(loaded, out)
        figure = figure4.write(loaded, sft_stats, out) if sft_stats is not None else None
    typer.echo(markdown, nl=False)
    written = [md_path, csv_path]
    if fourth is not None:
        typer.echo("\nTable 4: reasoning + outcome against outcome only\n")
        typer.echo(fourth[0], nl=False)
        written += [fourth[1], fourth[2]]
    if figure is not None:
        typer.echo("")
        typer.echo(figure[2], nl=False)
        written += [figure[0], figure[1]]
    typer.echo("wrote " + ", ".join(str(path) for path in written), err=True)
