"""CLI subcommands, one module per stage. Shared helpers for errors and overrides live here."""

from __future__ import annotations

import contextlib
import sys
from typing import Iterator, NoReturn

import typer


class UserError(Exception):
    """A problem with the user's input or configuration: reported in one line, exit code 2."""


def abort(message: str, code: int = 2) -> NoReturn:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn the project's expected failures into a clear message and a non-zero exit, not a traceback."""
    from deepicd.config import ConfigError
    from deepicd.endpoints import EndpointRefused

    try:
        yield
    except (UserError, ConfigError, EndpointRefused, FileNotFoundError) as exc:
        abort(str(exc))
    except KeyboardInterrupt:
        typer.secho("interrupted", err=True)
        sys.exit(130)
