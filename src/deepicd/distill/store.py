"""Append-only JSONL of teacher outputs, keyed by admission, that survives `kill -9`.

Distilling tens of thousands of notes takes hours on a teacher; a crash, a
pre-empted node or Ctrl-C must cost only the rows in flight. So:

* every row is one JSON line, written with a single `os.write` on an `O_APPEND`
  descriptor, straight from the generator's result: nothing sits in a user-space
  buffer that a killed process would lose or half-write;
* the writer calls `fsync` once per batch (`sync()`), bounding what a power cut
  can take, without paying a disk flush per row;
* on open, a torn last line (no newline, or not valid JSON) is truncated away, and
  the keys already present are the work that is done: a rerun skips them, so an
  admission is never written twice and never lost;
* an exclusive `flock` stops two runs from appending to the same file; the kernel
  drops it when the holder dies, even by SIGKILL.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Iterator

from deepicd.errors import UserError


class StoreError(UserError, RuntimeError):
    """A trace file that cannot be used as it is; the message names the file and line."""


class TraceStore:
    """Rows keyed by `key_field`, appended one whole line at a time. Use as a context manager."""

    def __init__(self, path: str | Path, key_field: str = "hadm_id") -> None:
        self.path = Path(path)
        self.key_field = key_field
        self.repaired_bytes = 0  # size of the torn tail removed on open
        self.duplicates = 0  # lines whose key was already present (kept: the first)
        self._keys: set[str] = set()
        self._fd: int | None = None
        self._lock_fd: int | None = None
        self._unsynced = 0

    # -- opening ---------------------------------------------------------------
    def open(self) -> "TraceStore":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(str(self.path) + ".lock", os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise StoreError(f"another run is writing to {self.path}; wait for it or use another output folder")
        self._repair_and_index()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        return self

    def discard(self) -> None:
        """Empty the open store (a run that starts over), under the lock that keeps other runs out."""
        os.ftruncate(self._fd, 0)
        self._keys.clear()
        self.duplicates = self._unsynced = 0

    def _repair_and_index(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        good_end = 0  # byte offset just past the last line that is whole and valid
        lines = data.split(b"\n")
        complete, tail = lines[:-1], lines[-1]
        offset = 0
        for number, raw in enumerate(complete, start=1):
            end = offset + len(raw) + 1
            if raw.strip():
                row = _parse(raw)
                if row is None or self.key_field not in row:
                    if number == len(complete) and not tail:
                        break  # a last line that is garbage is a torn write too
                    raise StoreError(
                        f"{self.path} line {number} is not a JSON object with {self.key_field!r}; "
                        "fix or delete that line and rerun"
                    )
                key = str(row[self.key_field])
                if key in self._keys:
                    self.duplicates += 1
                self._keys.add(key)
            good_end = end
            offset = end
        if good_end < len(data):
            self.repaired_bytes = len(data) - good_end
            with open(self.path, "r+b") as handle:
                handle.truncate(good_end)
                handle.flush()
                os.fsync(handle.fileno())

    # -- writing ---------------------------------------------------------------
    def __contains__(self, key: object) -> bool:
        return str(key) in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def keys(self) -> frozenset[str]:
        return frozenset(self._keys)

    def append(self, row: dict) -> bool:
        """Write one row as one line; False (and nothing written) if its key is already stored."""
        if self._fd is None:
            raise StoreError(f"{self.path} is not open for writing")
        key = str(row[self.key_field])
        if key in self._keys:
            return False
        data = (json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
        written = os.write(self._fd, data)
        while written < len(data):  # only on a full disk or a signal; finish the line
            written += os.write(self._fd, data[written:])
        self._keys.add(key)
        self._unsynced += 1
        return True

    def sync(self) -> None:
        """Flush what was appended to the disk (call once per batch)."""
        if self._fd is not None and self._unsynced:
            os.fsync(self._fd)
            self._unsynced = 0

    def close(self) -> None:
        if self._fd is not None:
            self.sync()
            os.close(self._fd)
            self._fd = None
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> "TraceStore":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()


def _parse(raw: bytes) -> dict | None:
    try:
        row = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return row if isinstance(row, dict) else None


def read_rows(path: str | Path, key_field: str = "hadm_id") -> Iterator[dict]:
    """The whole, valid rows of a trace file in order, first occurrence of each key only.

    A torn last line is skipped (a writer may be mid-line); anything else that is
    not a JSON object is an error naming the line.
    """
    path = Path(path)
    if not path.exists():
        return
    seen: set[str] = set()
    with open(path, "rb") as handle:
        lines = handle.read().split(b"\n")
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        row = _parse(raw)
        if row is None or key_field not in row:
            if number >= len(lines) - 1:
                return
            raise StoreError(f"{path} line {number} is not a JSON object with {key_field!r}")
        key = str(row[key_field])
        if key not in seen:
            seen.add(key)
            yield row
