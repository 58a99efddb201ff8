"""`deepicd report`: Table 3 of the paper across several evaluation folders."""

from __future__ import annotations

from pathlib import Path

import typer

from deepicd.commands import user_errors


def main(
    runs: list[Path] = typer.Argument(..., help="Evaluation folders (holding metrics.json, or with it in eval/), or metrics.json files."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write table3.md and table3.csv into."),
) -> None:
    """Line evaluations up as Table 3: macro R / P / F1 (%) per level, grouped Baselines / GRPO / SFT / SFT+GRPO."""
    from deepicd.evaluate import table

    with user_errors():
        loaded = table.load_runs(list(runs))
        markdown, md_path, csv_path = table.write(loaded, out)
    typer.echo(markdown, nl=False)
    typer.echo(f"wrote {md_path} and {csv_path}", err=True)
