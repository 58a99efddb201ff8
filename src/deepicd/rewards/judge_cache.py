"""On-disk cache of judge ratings, shared safely by every process of a training run.

GRPO samples the same prompt many times and evaluation reruns score the same
completions again; a rating that was already paid for should cost no request.
Ratings are keyed by the sha256 of the judge model, the prompt version and the
full prompt, so a different judge or a reworded prompt never reuses an old
rating. Only the hash and the score are stored: the cache holds no note text,
so it is no more sensitive than a table of numbers.

SQLite in WAL mode lets several reward workers (VERL runs one per node or GPU)
read and write the same file at once; each thread uses its own connection.
Only real scores are stored: an unparsed reply or a fallback is retried next time.
Scores keep their type: the published reading of a reply can give 4.5, which
must come back as 4.5, not 4. The judge uses the cache only for greedy
decoding: a sampled rating is one draw, and reusing it would stop the sampling.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Iterable, Mapping

from deepicd.errors import UserError

FILE_NAME = "judge-cache.sqlite3"
_CHUNK = 500  # keys per SELECT: SQLite limits the number of bound parameters


def _number(value: float) -> int | float:
    """An integral score as an int (4, not 4.0), any other as a float."""
    return int(value) if float(value).is_integer() else float(value)


def cache_key(model: str, prompt_version: str, payload: object) -> str:
    """sha256 over the judge model, prompt version and the exact prompt (messages or text)."""
    body = json.dumps([model, prompt_version, payload], ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


class JudgeCacheError(UserError, ValueError):
    """A cache folder or file that cannot be used; the message names it."""


class JudgeCache:
    """Scores by key in `folder`/judge-cache.sqlite3; safe across threads and processes."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder).expanduser()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise JudgeCacheError(f"cannot create the judge cache folder {self.folder}: {exc}") from exc
        self.path = self.folder / FILE_NAME
        self._local = threading.local()
        try:
            self._connection().execute(
                "CREATE TABLE IF NOT EXISTS ratings ("
                "key TEXT PRIMARY KEY, score INTEGER NOT NULL, model TEXT NOT NULL, created REAL NOT NULL)"
            )
        except sqlite3.Error as exc:
            self.close()
            raise JudgeCacheError(f"cannot use the judge cache {self.path}: {exc}") from exc

    def _connection(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            self._local.connection = connection
        return connection

    def get_many(self, keys: Iterable[str]) -> dict[str, int | float]:
        """Cached scores of the keys that have one."""
        wanted = list(dict.fromkeys(keys))
        found: dict[str, int | float] = {}
        connection = self._connection()
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = connection.execute(f"SELECT key, score FROM ratings WHERE key IN ({marks})", chunk)
            found.update((key, _number(score)) for key, score in rows)
        return found

    def get(self, key: str) -> int | float | None:
        return self.get_many([key]).get(key)

    def put_many(self, scores: Mapping[str, int | float], model: str) -> None:
        """Store scores in one transaction (a concurrent writer waits for the lock, up to 30 s)."""
        if not scores:
            return
        now = time.time()
        connection = self._connection()
        connection.execute("BEGIN IMMEDIATE")
        try:
            connection.executemany(
                "INSERT OR REPLACE INTO ratings (key, score, model, created) VALUES (?, ?, ?, ?)",
                [(key, _number(score), model, now) for key, score in scores.items()],
            )
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    def __len__(self) -> int:
        return int(self._connection().execute("SELECT COUNT(*) FROM ratings").fetchone()[0])

    def close(self) -> None:
        """Close this thread's connection (others close when their thread ends)."""
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None
