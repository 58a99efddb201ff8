"""CLI subcommands, one module per stage. Shared helpers for reporting errors live here."""

from __future__ import annotations

import contextlib
import sys
from typing import Iterator, NoReturn

import typer

from deepicd.errors import DeepicdError


def abort(message: str, code: int = 2) -> NoReturn:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def describe_os_error(exc: OSError) -> str:
    """One line for a path, permission or disk problem: what went wrong and on which path."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    return f"{reason}: {' -> '.join(paths)}" if paths else reason


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn the project's expected failures into one line and exit code 2, not a traceback.

    Expected failures are every `DeepicdError` and every `OSError` (a path that is missing, not
    writable, a folder where a file was expected, a full disk): the user can fix each, and a
    traceback would only hide the path at fault.
    """
    try:
        yield
    except DeepicdError as exc:
        abort(str(exc))
    except OSError as exc:
        abort(describe_os_error(exc))
    except KeyboardInterrupt:
        typer.secho("interrupted", err=True)
        sys.exit(130)
