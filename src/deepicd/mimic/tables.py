"""Streaming, validated reading of MIMIC-IV's gzipped CSV tables.

The discharge notes alone are gigabytes of text once decompressed, so nothing
here loads a whole table: pyarrow decompresses and parses block by block
(quoted fields may span lines) and only the columns a stage asks for are
converted. Each failure a user can cause — a missing file or column, a
truncated or non-gzip file, bytes that are not UTF-8, a value that is not a
number, a table with no rows — becomes a `UserError` naming the file and what is
wrong with it, instead of a pyarrow traceback.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pyarrow as pa
import pyarrow.csv as pacsv

from deepicd.errors import UserError


@dataclass(frozen=True)
class TableSpec:
    """One MIMIC table: where it lives, its full column list, and the columns we read (with types)."""

    name: str
    module: str  # "hosp" or "note": the sub-folder of its MIMIC root
    all_columns: tuple[str, ...]
    read: tuple[tuple[str, pa.DataType], ...]

    @property
    def filename(self) -> str:
        return f"{self.name}.csv.gz"


_INT = pa.int64()
_STR = pa.string()

TABLE_COLUMNS: dict[str, TableSpec] = {
    "patients": TableSpec(
        "patients", "hosp",
        ("subject_id", "gender", "anchor_age", "anchor_year", "anchor_year_group", "dod"),
        (("subject_id", _INT), ("gender", _STR), ("anchor_age", _INT)),
    ),
    "admissions": TableSpec(
        "admissions", "hosp",
        ("subject_id", "hadm_id", "admittime", "dischtime", "deathtime", "admission_type", "admit_provider_id",
         "admission_location", "discharge_location", "insurance", "language", "marital_status", "race",
         "edregtime", "edouttime", "hospital_expire_flag"),
        (("subject_id", _INT), ("hadm_id", _INT), ("admission_type", _STR)),
    ),
    "diagnoses_icd": TableSpec(
        "diagnoses_icd", "hosp",
        ("subject_id", "hadm_id", "seq_num", "icd_code", "icd_version"),
        (("subject_id", _INT), ("hadm_id", _INT), ("seq_num", _INT), ("icd_code", _STR), ("icd_version", _INT)),
    ),
    "discharge": TableSpec(
        "discharge", "note",
        ("note_id", "subject_id", "hadm_id", "note_type", "note_seq", "charttime", "storetime", "text"),
        (("note_id", _STR), ("subject_id", _INT), ("hadm_id", _INT), ("note_seq", _INT), ("text", _STR)),
    ),
}


def locate(root: Path, spec: TableSpec) -> Path:
    """The table's file under a MIMIC root: `<root>/<module>/<name>.csv.gz`, or directly in `<root>`."""
    candidates = [root / spec.module / spec.filename, root / spec.filename]
    for path in candidates:
        if path.is_file():
            return path
    tried = " or ".join(str(p) for p in candidates)
    raise UserError(f"MIMIC table {spec.filename} not found: looked for {tried}")


def read_header(path: Path) -> list[str]:
    """The column names of a gzipped CSV, read from its first line only."""
    try:
        with gzip.open(path, "rb") as handle:
            line = handle.readline(1 << 20)
    except (OSError, EOFError, zlib.error) as exc:
        raise UserError(f"{path}: cannot read as gzip ({exc})") from exc
    if not line.strip():
        raise UserError(f"{path}: the file is empty (no header line)")
    try:
        decoded = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: the header line is not valid UTF-8") from exc
    return [name.strip() for name in next(csv.reader(io.StringIO(decoded)))]


def check_columns(path: Path, spec: TableSpec) -> list[str]:
    header = read_header(path)
    missing = [name for name, _ in spec.read if name not in header]
    if missing:
        raise UserError(
            f"{path}: missing column(s) {', '.join(missing)} of MIMIC table {spec.name}; "
            f"found: {', '.join(header)}"
        )
    return header


_COLUMN_NUMBER = re.compile(r"In CSV column #(\d+): (.*)", re.S)


def _explain(path: Path, header: list[str], exc: Exception) -> UserError:
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "Truncated compressed stream" in message:
        return UserError(f"{path}: the gzip stream is truncated (incomplete download or copy?)")
    if "inflate failed" in message or "incorrect header check" in message:
        return UserError(f"{path}: not a valid gzip file ({message})")
    match = _COLUMN_NUMBER.search(str(exc))
    if match:
        index, detail = int(match.group(1)), match.group(2).splitlines()[0]
        column = header[index] if index < len(header) else f"#{index}"
        if "invalid UTF8" in detail:
            return UserError(f"{path}: column '{column}' holds bytes that are not valid UTF-8")
        return UserError(f"{path}: column '{column}': {detail}")
    return UserError(f"{path}: cannot parse as CSV ({message})")


def iter_batches(
    path: Path,
    spec: TableSpec,
    *,
    block_size: int = 16 << 20,
    on_progress: Callable[[int], None] | None = None,
) -> Iterator[pa.RecordBatch]:
    """Record batches of the table's `read` columns, typed; raises `UserError` on any bad input.

    `on_progress` receives the number of compressed bytes consumed so far.
    Raises for a table with a header but no rows, since every MIMIC table used here has rows.
    """
    header = check_columns(path, spec)
    raw = pa.OSFile(str(path), "rb")
    rows = 0
    try:
        stream = pa.CompressedInputStream(raw, "gzip")
        reader = pacsv.open_csv(
            stream,
            read_options=pacsv.ReadOptions(block_size=block_size, use_threads=True),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                include_columns=[name for name, _ in spec.read],
                column_types=dict(spec.read),
                strings_can_be_null=False,
            ),
        )
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                break
            rows += batch.num_rows
            if on_progress is not None:
                on_progress(raw.tell())
            yield batch
    except (pa.ArrowInvalid, OSError, EOFError) as exc:
        raise _explain(path, header, exc) from exc
    finally:
        raw.close()
    if rows == 0:
        raise UserError(f"{path}: table {spec.name} has a header but no rows")


def read_table(path: Path, spec: TableSpec, *, block_size: int = 16 << 20) -> pa.Table:
    """A small table (patients, admissions, diagnoses) read whole, but still through the checked stream."""
    batches = list(iter_batches(path, spec, block_size=block_size))
    return pa.Table.from_batches(batches)
