"""Reading what an evaluation scores: a predictions JSONL, or a preprocess data folder.

Both readers fail early, naming the file, the line or the column at fault, so
a long generation run never ends in a traceback over a typo in a field name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepicd import icd, split_tables
from deepicd.errors import UserError
from deepicd.jsonl import read_objects



@dataclass
class Predictions:
    """Rows to score: an id, the gold code and k completions (text generated after the prefill) each."""

    ids: list[str]
    gold: np.ndarray  # normalised gold codes, object array
    completions: list[list[str]]
    # Prompt length in tokens per row when known (generations.jsonl records it), for `max_prompt_tokens`.
    prompt_tokens: list[int | None] | None = None

    @property
    def k(self) -> int:
        return len(self.completions[0]) if self.completions else 1

    def __len__(self) -> int:
        return len(self.ids)


def _gold_of(value: object, where: str) -> str:
    if isinstance(value, list):
        if not value or not all(isinstance(code, str) for code in value):
            raise UserError(f"{where}: 'gold' must be a code or a non-empty list of codes, got {json.dumps(value)[:60]}")
        value = value[0]
    if not isinstance(value, str):
        raise UserError(f"{where}: 'gold' must be a code or a non-empty list of codes, got {json.dumps(value)[:60]}")
    code = icd.normalize(value)
    if not code:
        raise UserError(f"{where}: 'gold' is empty")
    if not icd.is_well_formed(code):
        raise UserError(f"{where}: 'gold' is {value!r}, not a well-formed ICD-10-CM code (such as I214 or I21.4); "
                        "only ICD-10-CM targets can be scored")
    return code


def _completions_of(row: dict, where: str) -> list[str]:
    if "completions" in row:
        value = row["completions"]
        if not isinstance(value, list) or not value or not all(isinstance(c, str) for c in value):
            raise UserError(f"{where}: 'completions' must be a non-empty list of strings")
        return value
    if "completion" not in row:
        raise UserError(f"{where}: missing field 'completion' (or 'completions' for k samples)")
    if not isinstance(row["completion"], str):
        raise UserError(f"{where}: 'completion' must be a string, got {type(row['completion']).__name__}")
    return [row["completion"]]


def read_predictions(path: Path, *, limit: int = 0, progress: bool = False) -> Predictions:
    """Rows of a JSONL file with `gold` and `completion` (or `completions`), optional `id`; blank lines skipped."""
    if not path.is_file():
        raise UserError(f"predictions file not found: {path}")
    ids: list[str] = []
    gold: list[str] = []
    completions: list[list[str]] = []
    lengths: list[int | None] = []
    first_line: dict[str, int] = {}  # id -> the line it first appeared on
    k = None
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=path.stat().st_size, desc=f"reading {path.name}", unit="B", unit_scale=True, leave=False)
    try:
        for number, row in read_objects(path, bar):
            where = f"{path}:{number}"
            if "gold" not in row:
                raise UserError(f"{where}: missing field 'gold'")
            texts = _completions_of(row, where)
            if k is None:
                k = len(texts)
            elif len(texts) != k:
                raise UserError(f"{where}: {len(texts)} completions, but earlier rows have {k}; every row needs the same k")
            identifier = row.get("id", number)
            if not isinstance(identifier, (str, int)) or isinstance(identifier, bool):
                raise UserError(f"{where}: 'id' must be a string or an integer")
            if str(identifier) in first_line:
                raise UserError(f"{where}: id {identifier!r} already appeared on line {first_line[str(identifier)]}; "
                                "each note must be scored once")
            first_line[str(identifier)] = number
            length = row.get("prompt_tokens")
            if length is not None and (isinstance(length, bool) or not isinstance(length, int) or length < 0):
                raise UserError(f"{where}: 'prompt_tokens' must be a whole number of tokens, got {json.dumps(length)[:40]}")
            gold.append(_gold_of(row["gold"], where))
            completions.append(texts)
            ids.append(str(identifier))
            lengths.append(length or None)
            if limit and len(ids) >= limit:
                break
    finally:
        if bar is not None:
            bar.close()
    if not ids:
        raise UserError(f"predictions file {path} holds no rows")
    return Predictions(ids, np.asarray(gold, dtype=object), completions, lengths)


def read_train_codes(data_dir: Path | None) -> tuple[np.ndarray | None, Path | None]:
    """First codes of the train split, for the majority baseline and frequency terciles; None without one."""
    if data_dir is None:
        return None, None
    path = split_tables.notes_path(data_dir, "train")
    if not path.is_file():
        return None, None
    codes = split_tables.read_first_codes(path)
    return (codes if len(codes) else None), path


def read_split_codes(data_dir: Path, splits: tuple[str, ...] = ("train", "val", "test")) -> tuple[np.ndarray, list[Path]]:
    """The normalised first codes of every split in `splits` (all must exist), and the files read."""
    if not data_dir.is_dir():
        raise UserError(f"data folder not found: {data_dir}")
    codes: list[np.ndarray] = []
    paths = []
    for split in splits:
        path = split_tables.notes_path(data_dir, split)
        if not path.is_file():
            raise UserError(f"labels=all-splits needs {path} (the label space is the first codes of {', '.join(splits)})")
        codes.append(split_tables.read_first_codes(path))
        paths.append(path)
    return np.concatenate(codes).astype(object), paths


def find_labels(labels: str | Path | None, data_dir: Path | None) -> Path | None:
    """The label space file: the one given, else `labels.csv` in the data folder, else None."""
    if labels == "train":
        labels = ""
    if labels:
        path = Path(labels)
        if not path.is_file():
            raise UserError(f"labels file not found: {path}")
        return path
    if data_dir is not None and (data_dir / "labels.csv").is_file():
        return data_dir / "labels.csv"
    return None
