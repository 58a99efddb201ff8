"""The `deepicd` command line: one thin subcommand per pipeline stage.

Each stage lives in its own module under `deepicd.commands`; this file only
assembles them, so `deepicd --help` lists exactly the stages that exist.
"""

from __future__ import annotations

import typer

from deepicd.commands import score  # noqa: F401
from deepicd.commands import tiny_model  # noqa: F401
from deepicd.commands import distill  # noqa: F401
from deepicd.commands import sft  # noqa: F401
from deepicd.commands import sft_data  # noqa: F401
from deepicd.commands import format_data  # noqa: F401
from deepicd.commands import evaluate, report  # noqa: F401
from deepicd.commands import synth_mimic, preprocess  # noqa: F401
from deepicd.commands import train_grpo  # noqa: F401

app = typer.Typer(
    name="deepicd",
    help=(
        "Train and evaluate reasoning LLMs that predict the first ICD-10-CM discharge diagnosis "
        "of a MIMIC-IV admission note. Stages talk only through files: run them in order, or alone."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)



def _version(value: bool) -> None:
    if value:
        from deepicd import __version__

        typer.echo(f"deepicd {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Stages talk only through files on disk; each writes a manifest beside its outputs."""


app.command("score")(score.main)
app.command("tiny-model")(tiny_model.main)
app.command("distill")(distill.main)
app.command("sft")(sft.main)
app.command("sft-data")(sft_data.main)
app.command("format-data")(format_data.main)
app.command("evaluate")(evaluate.main)
app.command("report")(report.main)
app.command("synth-mimic")(synth_mimic.main)
app.command("preprocess")(preprocess.main)
app.command("train-grpo")(train_grpo.main)
