"""Reading JSONL inputs the same way everywhere: one JSON object per line, errors named by file:line.

`deepicd score` and `deepicd evaluate --predictions` read user files that may be
huge, hand-edited or truncated; both stream them through `read_objects`, so a
bad line gets the same clear message in either command.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from deepicd.errors import UserError


class JsonlError(UserError):
    """A line that is not a JSON object; the message starts with `file:line`."""


def read_objects(path: Path, progress=None) -> Iterator[tuple[int, dict]]:
    """(line number, object) for every non-blank line; `progress.update(bytes)` is called per line if given."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if progress is not None:
                progress.update(len(raw))
            if not raw.strip():
                continue
            where = f"{path}:{number}"
            try:
                row = json.loads(raw)
            except UnicodeDecodeError as exc:
                raise JsonlError(f"{where}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
            except json.JSONDecodeError as exc:
                raise JsonlError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(row, dict):
                raise JsonlError(f"{where}: expected a JSON object, got {type(row).__name__}")
            yield number, row
