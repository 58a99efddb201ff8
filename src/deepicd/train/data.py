"""The GRPO training data: finding, checking and reading what `deepicd preprocess` wrote.

Both engines read the same files. VERL reads `verl/<split>.parquet` itself
(chat messages in `prompt`, the gold code list in `reward_model.ground_truth`,
the note in `extra_info.note`); the TRL backend reads the same rows, or the
plain `<split>.parquet` tables (`text`, `first_code`), and renders them to
prompt text here. Checking the schema before launching turns a crash deep in a
Ray worker into one line that names the file and column.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepicd.errors import UserError
from deepicd.split_tables import VERL_COLUMNS, columns_of, notes_path, read_notes_file, verl_path


@dataclass(frozen=True)
class Example:
    """One training prompt: chat messages (system + user), the gold code and the note for the judge."""

    messages: list[dict[str, str]]
    gold: str
    note: str
    hadm_id: str


def find_split(data_dir: str | Path, split: str) -> Path:
    """`verl/<split>.parquet` when it exists, else the plain `<split>.parquet`."""
    folder = Path(data_dir)
    if not folder.is_dir():
        raise UserError(f"data folder not found: {folder} (run `deepicd preprocess` first)")
    for path in (verl_path(folder, split), notes_path(folder, split)):
        if path.is_file():
            return path
    raise UserError(f"no {split} split in {folder}: expected verl/{split}.parquet or {split}.parquet")


def _read(path: Path, limit: int | None = None):
    import pyarrow.parquet as pq

    try:
        handle = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a file that is not parquet
        raise UserError(f"{path}: cannot read it as parquet ({exc})") from exc
    if limit is None:
        return handle.read().to_pylist()
    rows: list[dict] = []
    for batch in handle.iter_batches(batch_size=max(limit, 1)):
        rows.extend(batch.to_pylist())
        if len(rows) >= limit:
            break
    return rows[:limit]


def check_verl_file(path: str | Path, *, need_note: bool, sample_rows: int = 8) -> list[str]:
    """Problems with a VERL parquet file (empty list when it is usable), each naming file and column."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        return [f"{path}: file not found (run `deepicd preprocess` to write the verl/ folder)"]
    try:
        schema = pq.ParquetFile(path).schema_arrow
    except Exception as exc:
        return [f"{path}: cannot read it as parquet ({exc})"]
    missing = [c for c in VERL_COLUMNS if c not in schema.names]
    if missing:
        return [f"{path}: missing column(s) {missing}; VERL rows need {list(VERL_COLUMNS)}"]
    rows = _read(path, sample_rows)
    if not rows:
        return [f"{path}: no rows"]
    problems: list[str] = []
    for number, row in enumerate(rows):
        problems += _check_row(path, number, row, need_note)
        if problems:
            break
    return problems


def _check_row(path: Path, number: int, row: dict, need_note: bool) -> list[str]:
    where = f"{path}, row {number}"
    prompt = row.get("prompt")
    if not isinstance(prompt, list) or not prompt or not all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in prompt
    ):
        return [f"{where}: column 'prompt' must be a non-empty list of {{role, content}} chat messages"]
    if prompt[-1]["role"] != "user":
        return [f"{where}: column 'prompt' must end with the user message (the assistant turn is generated)"]
    reward_model = row.get("reward_model")
    truth = reward_model.get("ground_truth") if isinstance(reward_model, dict) else None
    if not isinstance(truth, list) or not truth or not isinstance(truth[0], str) or not truth[0].strip():
        return [f"{where}: column 'reward_model.ground_truth' must be a one-element list holding the gold code"]
    extra = row.get("extra_info")
    if not isinstance(extra, dict):
        return [f"{where}: column 'extra_info' must be a struct"]
    if need_note and not (isinstance(extra.get("note"), str) and extra["note"].strip()):
        return [f"{where}: column 'extra_info.note' is empty, but the reward preset uses the judge, which reads the note"]
    return []


def read_examples(path: str | Path, limit: int = -1) -> list[Example]:
    """Training prompts from a VERL parquet or a plain admission-note parquet."""
    from deepicd.prompts import task

    path = Path(path)
    if set(VERL_COLUMNS) <= set(columns_of(path)):
        rows = _read(path, limit if limit > 0 else None)
        if not rows:
            raise UserError(f"{path}: no rows")
        examples: list[Example] = []
        for number, row in enumerate(rows):
            problems = _check_row(path, number, row, need_note=False)
            if problems:
                raise UserError(problems[0])
            extra = row["extra_info"] or {}
            examples.append(
                Example(
                    messages=[{"role": m["role"], "content": m["content"]} for m in row["prompt"]],
                    gold=row["reward_model"]["ground_truth"][0],
                    note=str(extra.get("note") or ""),
                    hadm_id=str(extra.get("hadm_id", number)),
                )
            )
        return examples
    # Anything else must be an admission-note table; its reader names what is missing.
    frame = read_notes_file(path, columns=(), limit=max(limit, 0))
    return [Example(task.messages(str(row.text)), str(row.first_code), str(row.text), str(row.hadm_id))
            for row in frame.itertuples(index=False)]


def render_prompt(tokenizer: Any, messages: list[dict[str, str]], prefill: str) -> str:
    """Prompt text a model continues: the chat template with the generation prompt, then the prefill."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) + prefill
