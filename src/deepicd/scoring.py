"""Score a JSONL file of completions with a reward preset, streaming, in input order.

Memory stays bounded whatever the file size: rows are read, scored and written
in fixed-size batches. The output goes to a temporary file that is renamed only
when every row has been scored, so a malformed row or a crash never leaves a
half-written result behind.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from tqdm import tqdm

from deepicd import manifest, run_folder
from deepicd.jsonl import JsonlError, read_objects
from deepicd.rewards.scorer import RewardScorer
from deepicd.schema import require, require_given


class InputError(JsonlError):
    """A row of the input file that cannot be scored; the message names the line."""


@dataclass(frozen=True)
class ScoreRow:
    line: int
    completion: str
    gold: object
    note: str | None
    id: object


def _validate(line_number: int, row: dict, source: Path) -> ScoreRow:
    where = f"{source}:{line_number}"
    for name in ("completion", "gold"):
        if name not in row:
            raise InputError(f"{where}: missing field '{name}'")
    completion, gold, note = row["completion"], row["gold"], row.get("note")
    if not isinstance(completion, str):
        raise InputError(f"{where}: 'completion' must be a string, got {type(completion).__name__}")
    gold_ok = isinstance(gold, str) or (
        isinstance(gold, list) and len(gold) > 0 and all(isinstance(code, str) for code in gold)
    )
    if not gold_ok:
        raise InputError(f"{where}: 'gold' must be a code or a non-empty list of codes, got {json.dumps(gold)[:60]}")
    if note is not None and not isinstance(note, str):
        raise InputError(f"{where}: 'note' must be a string, got {type(note).__name__}")
    return ScoreRow(line_number, completion, gold, note, row.get("id"))


def read_rows(path: Path, progress: tqdm | None = None) -> Iterator[ScoreRow]:
    """Validated rows of a JSONL file; blank lines are skipped."""
    for line_number, row in read_objects(path, progress):
        yield _validate(line_number, row, path)


def _batches(rows: Iterator[ScoreRow], size: int) -> Iterator[list[ScoreRow]]:
    batch: list[ScoreRow] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass
class ScoreConfig:
    """`deepicd score`: which completions, which reward, where the scores go."""

    input: str = ""  # JSONL of completions: 'completion', 'gold', optional 'note' and 'id' (-i)
    output: str = ""  # JSONL written in input order, one row per input row (-o)
    reward: str = ""  # a reward preset (configs/rewards/NAME.yaml) or a reward YAML file (--preset / --config)
    overrides: list[str] = field(default_factory=list)  # key=value overrides of the reward config
    batch_size: int = 512  # rows scored together (and judged concurrently)
    overwrite: bool = False  # replace an existing output file (--overwrite)

    def __post_init__(self) -> None:
        require(self.batch_size >= 1, "score setting", "batch_size", "must be at least 1", self.batch_size)


@dataclass
class ScoreResult:
    output: Path
    rows: int


def run(config: ScoreConfig, *, show_progress: bool = True) -> ScoreResult:
    """Score `config.input` with the configured reward into `config.output`.

    The output is a file, so there is no manifest to compare a rerun with: an
    existing output is replaced only with `overwrite`, and only once the new one
    is complete.
    """
    from deepicd.rewards.config import load_reward_config

    require_given(config, "score setting", {"input": "-i", "output": "-o", "reward": "--preset or --config"})
    target = Path(config.output)
    run_folder.refuse_overlap([target], {"file (-i)": config.input}, flag="output")
    if target.is_file() and not config.overwrite:
        raise InputError(f"output {target} exists; pass --overwrite to replace it")
    scorer = RewardScorer(load_reward_config(config.reward, list(config.overrides)))
    rows = score_file(scorer, Path(config.input), target, config.batch_size, show_progress)
    return ScoreResult(target, rows)


def score_file(scorer: RewardScorer, source: Path, target: Path, batch_size: int = 512, show_progress: bool = True) -> int:
    """Score every row of `source` into `target`; return the number of rows. Atomic: all or nothing."""
    if not source.is_file():
        raise InputError(f"input file not found: {source}")
    if target.is_dir():
        raise InputError(f"output {target} is a folder; give a file name")
    count = 0
    progress = tqdm(total=source.stat().st_size, unit="B", unit_scale=True, desc="scoring", disable=not show_progress)
    try:
        with manifest.atomic_open(target) as out:
            for batch in _batches(read_rows(source, progress), batch_size):
                if scorer.uses_judge and any(row.note is None for row in batch):
                    missing = next(row for row in batch if row.note is None)
                    raise InputError(f"{source}:{missing.line}: the judge reward needs a 'note' field")
                results = scorer.score_batch([(row.completion, row.gold, row.note) for row in batch])
                for row, result in zip(batch, results):
                    record = {"id": row.id} if row.id is not None else {}
                    record.update(result.as_row())
                    out.write(json.dumps(record, ensure_ascii=False) + "\n")
                count += len(batch)
                progress.set_postfix(rows=count)
            if count == 0:
                raise InputError(f"{source} holds no rows to score")
    finally:
        progress.close()
    return count
