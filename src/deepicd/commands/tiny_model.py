"""`deepicd tiny-model`: build the small random-init model every CPU test and the demo run on."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from deepicd.commands import user_errors


def main(
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write the Hugging Face model into (config.json, model.safetensors, tokenizer files)."),
    corpus: Optional[list[Path]] = typer.Option(None, "--corpus", help="Extra tokenizer training text: .txt/.md files, or .jsonl/.parquet with a 'text' column (e.g. a preprocess train.parquet). Repeatable."),
    config: str = typer.Option("default", "--config", "-c", help="Tiny-model preset name (configs/tiny/NAME.yaml) or a YAML file."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT when it holds anything but this very model (which is kept: a rerun does nothing)."),
    overrides: Optional[list[str]] = typer.Argument(None, help="Config overrides as key=value, e.g. hidden_size=256 num_hidden_layers=4 seed=7."),
) -> None:
    """Build a tiny Qwen2-architecture chat model with a locally trained tokenizer; nothing is downloaded."""
    from deepicd import tiny
    from deepicd.config import with_fields
    from deepicd.run_folder import already_done

    with user_errors():
        # Options win over the preset; set as fields (not overrides) so paths need no quoting.
        settings = with_fields(tiny.load_tiny_config(config, list(overrides or [])), {
            "out": str(out), "corpus": [str(path) for path in corpus] if corpus else None,
            "overwrite": True if overwrite else None,
        })
        typer.echo(f"building tiny model in {out} (seed {settings.seed})", err=True)
        result = tiny.run(settings, progress=True)
    if result.already_done:
        typer.echo(already_done(out))
        return
    chars = sum(source.chars for source in result.corpus)
    typer.echo(
        f"wrote {result.path}: {result.parameters:,} parameters, vocabulary {result.vocab_size}, "
        f"tokenizer trained on {chars:,} characters, {result.seconds:.1f} s"
    )
