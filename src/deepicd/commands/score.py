"""`deepicd score`: apply a reward preset to a JSONL file of completions."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from deepicd.commands import user_errors
from deepicd.errors import UserError


def main(
    input: Path = typer.Option(..., "--input", "-i", help="JSONL, one object per line: 'completion' (text generated after the <think> prefill), 'gold' (code or list of codes), optional 'note' and 'id'."),
    output: Path = typer.Option(..., "--output", "-o", help="JSONL written in input order: 'reward', one field per reward term, 'prediction', 'valid', 'exact'."),
    preset: Optional[str] = typer.Option(None, "--preset", "-p", help="Reward preset shipped with deepicd: 'paper' (the published reward) or 'paper-judge' (plus the LLM judge)."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="A reward YAML file instead of a preset."),
    judge_url: Optional[str] = typer.Option(None, help="OpenAI-compatible judge server (e.g. http://127.0.0.1:8000/v1); sets judge.url."),
    judge_model: Optional[str] = typer.Option(None, help="Model name the judge server serves; sets judge.model."),
    allow_external_endpoint: bool = typer.Option(False, "--allow-external-endpoint", help="Allow a judge outside loopback/private networks. MIMIC-IV's data use agreement forbids third-party services: use only for servers you control."),
    batch_size: int = typer.Option(512, min=1, help="Rows scored together (and judged concurrently)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --output (once the new one is complete)."),
    overrides: Optional[list[str]] = typer.Argument(None, help="Reward config overrides as key=value, e.g. outcome.match=10 code_pattern=paper."),
) -> None:
    """Score completions with a reward preset: the same reward GRPO trains with, one row per input row."""
    from deepicd.scoring import ScoreConfig, run

    with user_errors():
        if (preset is None) == (config is None):
            raise UserError("give exactly one of --preset NAME or --config FILE")
        extra = list(overrides or [])
        if judge_url:
            extra.append(f"judge.url={judge_url}")
        if judge_model:
            extra.append(f"judge.model={judge_model}")
        if allow_external_endpoint:
            extra.append("judge.allow_external_endpoint=true")
        result = run(ScoreConfig(input=str(input), output=str(output), reward=str(config or preset), overrides=extra,
                                 batch_size=batch_size, overwrite=overwrite))
    typer.echo(f"scored {result.rows} rows -> {result.output}")
