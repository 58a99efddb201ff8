"""Outcome-only SFT data: the code-only prompt and the gold answer, no reasoning, no teacher.

The paper's Table 4 fine-tunes the same student twice: on distilled reasoning
plus answer (`deepicd distill`), and on the answer alone. This module builds
the second set from a preprocess split, in the shape `deepicd sft` reads
(`sft/train.parquet`, `sft/val.parquet` with chat-message `prompt` and
`completion` columns, the same extra columns as the distilled set), with the
same patient-disjoint train/val split, so the two rows of Table 4 differ in the
target only. Every note is kept: there is nothing to filter without a teacher;
`like` (a distill output folder) restricts the set to the notes that the
distilled set kept, in its train/val assignment, so both students see exactly
the same notes.

The manifest records `prompts.target: outcome-only`; `deepicd sft` copies that
record into the model's manifest, and `deepicd evaluate` / `deepicd report`
read it to put the model in the outcome-only row of Table 4.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from deepicd import icd, manifest
from deepicd.errors import UserError
from deepicd.schema import require, require_given

COLUMNS = ["prompt", "completion", "hadm_id", "subject_id", "code", "trace_words"]
TARGET = "outcome-only"


@dataclass
class AnswerOnlyConfig:
    """Where the outcome-only set comes from and goes, and how it is split (with the distill preset's values both
    sets hold the same patients out)."""

    data: str = ""  # preprocess output folder holding SPLIT.parquet (--data)
    split: str = "train"  # which split to turn into samples
    out: str = ""  # output folder: sft/{train,val}.parquet, stats.json, manifest.json (--out)
    overwrite: bool = False  # replace what OUT holds when it is not this very set (--overwrite)
    # Share of patients held out as SFT validation samples; 0 as the paper's distill preset (no val.parquet).
    val_fraction: float = 0.0
    split_seed: int = 42  # seeds the patient-level train/val assignment
    limit: int = 0  # use only the first N notes of the split (0: all)
    # A `deepicd distill` output folder: keep only the notes its sft/ set holds, split as it is split.
    like: str = ""

    def __post_init__(self) -> None:
        require(0.0 <= self.val_fraction < 1.0, "sft-data config", "val_fraction", "must be in [0, 1)", self.val_fraction)
        require(self.limit >= 0, "sft-data config", "limit", "must not be negative", self.limit)


@dataclass
class AnswerOnlyResult:
    out: Path
    train: int
    val: int
    codes: int
    already_done: bool = False  # OUT held this very set; nothing was written


def samples(frame: pd.DataFrame) -> pd.DataFrame:
    """One prompt-completion row per note: the code-only prompt, then `<diagnosis>GOLD</diagnosis>`."""
    from deepicd.prompts import code_only

    rows = []
    for row in frame.itertuples(index=False):
        gold = icd.normalize(row.first_code)
        rows.append(
            {
                "prompt": code_only.messages(row.text),
                "completion": [{"role": "assistant", "content": code_only.completion(gold)}],
                "hadm_id": str(row.hadm_id),
                "subject_id": str(getattr(row, "subject_id", row.hadm_id)),
                "code": gold,
                "trace_words": 0,
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def split(table: pd.DataFrame, config: AnswerOnlyConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Patient-disjoint train/val tables, with the rule (and seed) the distilled set uses."""
    from deepicd.distill.run import _val_subjects

    held_out = _val_subjects(sorted(set(table["subject_id"])), config.val_fraction, config.split_seed)
    is_val = table["subject_id"].isin(held_out)
    return table[~is_val].reset_index(drop=True), table[is_val].reset_index(drop=True)


def distilled_notes(folder: Path) -> tuple[set[str], set[str]]:
    """hadm_ids of the train and val samples of a distilled SFT set (`deepicd distill` output folder)."""
    from deepicd.train.sft import data_files

    train_path, val_path = data_files(folder)

    def ids(path: Path | None) -> set[str]:
        if path is None:
            return set()
        try:
            column = pd.read_parquet(path, columns=["hadm_id"])["hadm_id"]
        except (KeyError, ValueError) as exc:
            raise UserError(f"{path} has no column 'hadm_id' to match notes by ({exc})") from None
        return set(column.astype(str))

    return ids(train_path), ids(val_path)


def split_like(table: pd.DataFrame, folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The notes of a distilled set, in its train/val assignment; notes it did not keep are left out."""
    train_ids, val_ids = distilled_notes(folder)
    if not train_ids:
        raise UserError(f"the distilled set in {folder} holds no training samples")
    missing = (train_ids | val_ids) - set(table["hadm_id"])
    if missing:
        raise UserError(
            f"{len(missing)} notes of the distilled set in {folder} are not in this split (e.g. hadm_id "
            f"{sorted(missing)[0]}); give the --data and --split the distillation read"
        )
    train = table[table["hadm_id"].isin(train_ids)].reset_index(drop=True)
    val = table[table["hadm_id"].isin(val_ids)].reset_index(drop=True)
    return train, val


def _chapter_key(code: str) -> str:
    """The chapter label `deepicd distill` writes in stats.json ("09 IX (I00-I99)"), so one reader serves both."""
    chapter = icd.chapter(code)
    return f"{chapter.number:02d} {chapter.roman} ({chapter.range})" if chapter else "?? (no chapter)"


def stats(table: pd.DataFrame, train: pd.DataFrame, val: pd.DataFrame) -> dict:
    """stats.json: the sample counts in the layout of the distilled set's (Table 2 and per chapter)."""
    per_chapter = Counter(_chapter_key(code) for code in table["code"])
    return {
        "target": TARGET,
        "table2": {"samples": len(table), "unique_codes": int(table["code"].nunique()), "mean_words": 0.0,
                   "min_words": 0, "max_words": 0},
        "admissions": len(table),
        "kept": len(table),
        "per_chapter": [
            {"chapter": key, "generated": n, "kept": n, "kept_rate": 1.0}
            for key, n in sorted(per_chapter.items(), key=lambda item: item[0])
        ],
        "sft_train": len(train),
        "sft_val": len(val),
    }


def _write_parquet(table: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with manifest.atomic_open(path, "wb") as handle:
        table.to_parquet(handle, index=False)


def run(config: AnswerOnlyConfig) -> AnswerOnlyResult:
    """Write OUT/sft/{train,val}.parquet, OUT/stats.json and OUT/manifest.json for one preprocess split.

    See deepicd.run_folder for what a rerun into the same OUT does.
    """
    from deepicd import run_folder
    from deepicd.split_tables import read_notes
    from deepicd.prompts import code_only

    require_given(config, "sft-data config", {"data": "--data", "out": "--out"})
    out, split_name = Path(config.out), config.split
    inputs = {split_name: Path(config.data) / f"{split_name}.parquet", "like": config.like or None}
    run_folder.refuse_overlap([out / "sft", out / "stats.json", out / manifest.FILE], inputs)
    done = run_folder.previous_run(out, "sft-data", dataclasses.asdict(config), inputs, overwrite=config.overwrite,
                                   ignore=("data", "out", "overwrite", "like"))
    if done is not None:
        made = done["result"]
        return AnswerOnlyResult(out, made["sft_train"], made["sft_val"], made["table2"]["unique_codes"], True)
    frame = read_notes(config.data, split_name)
    if config.limit:
        frame = frame.head(config.limit)
    table = samples(frame)
    if config.like:
        train, val = split_like(table, Path(config.like))
        table = pd.concat([train, val], ignore_index=True)
    else:
        train, val = split(table, config)
    if train.empty:
        raise UserError(f"no training samples: {len(table)} notes, val_fraction={config.val_fraction} holds them all out")
    _write_parquet(train, out / "sft" / "train.parquet")
    if len(val):
        _write_parquet(val, out / "sft" / "val.parquet")
    else:  # `deepicd sft` evaluates on any val.parquet it finds; one from an earlier build must not linger
        (out / "sft" / "val.parquet").unlink(missing_ok=True)
    summary = stats(table, train, val)
    manifest.write_json(out / "stats.json", summary)
    entry = manifest.record(
        "sft-data", config=dataclasses.asdict(config), seed=config.split_seed,
        inputs=inputs,
        # `deepicd sft` copies this record into the model's manifest (Table 4 reads `target`).
        prompts={"code_only": code_only.VERSION, "target": TARGET},
        result={"split": split_name, **{k: summary[k] for k in ("table2", "sft_train", "sft_val")}},
    )
    manifest.write(out, entry, outputs=manifest.describe_outputs(out, ["sft/train.parquet", "sft/val.parquet"]))
    return AnswerOnlyResult(out, len(train), len(val), summary["table2"]["unique_codes"])
