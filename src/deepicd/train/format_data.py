"""Format-only SFT data: the task prompt, a few words of the note as reasoning, and a code drawn at random.

The paper starts GRPO from an instruction-tuned model: one that already
answers in `<think>…</think><diagnosis>…</diagnosis>` some of the time and
writes clinical words, but has never been taught which code fits a note. A
random-init tiny model does neither, and GRPO cannot learn from a reward it
never earns. This set teaches it the first two things and withholds the
third: every trace quotes the note (so the words are clinical), and every
answer is the gold code of another, randomly chosen note of the split (so the
codes follow the split's frequencies but say nothing about this note). A
model fine-tuned on it is an instruct-like base whose chapter F1 is chance.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from deepicd import icd, manifest
from deepicd.errors import UserError

COLUMNS = ["prompt", "completion", "hadm_id", "subject_id", "code", "trace_words"]
TARGET = "format-only"
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")


@dataclass
class FormatDataConfig:
    seed: int = 0
    max_words: int = 12  # words of note text in each trace; short enough to close </think> in a few dozen tokens
    limit: int = 0  # use only the first N notes of the split (0: all)


def sentences(text: str) -> list[str]:
    """Sentences of a note body with at least three words, headers and `___` spans left out."""
    body = re.sub(r"^[A-Z][A-Z /]+:\s*", "", text, flags=re.MULTILINE)
    parts = (part.strip() for part in _SENTENCE.split(body))
    return [p for p in parts if len(p.split()) >= 3 and "___" not in p and not p.endswith(":")]


def complaint(text: str) -> str | None:
    """The CHIEF COMPLAINT paragraph of an admission note, if it has one."""
    found = re.search(r"^CHIEF COMPLAINT:\s*(.+)$", text, flags=re.MULTILINE)
    return found.group(1).strip() if found and found.group(1).strip() else None


def trace(text: str, rng: random.Random, max_words: int) -> str:
    """A short reasoning in the note's own words: its chief complaint, else the start of one of its sentences.

    Restating the complaint is where a clinician's reasoning starts, and it puts the note's most telling
    words right before the answer, where later training can tie them to a code.
    """
    stated = complaint(text)
    if stated:
        words = ["The", "patient", "presents", "with", *stated.split()][:max_words]
    else:
        words = rng.choice(sentences(text) or [text]).split()[:max_words]
    return " " + " ".join(words).rstrip(".,;:") + ". "


def samples(frame: pd.DataFrame, config: FormatDataConfig) -> pd.DataFrame:
    """One sample per note; the answer is a gold code of the split drawn independently of the note."""
    from deepicd.distill.filters import sft_completion
    from deepicd.prompts import task

    rng = random.Random(config.seed)
    golds = [icd.normalize(code) for code in frame["first_code"]]
    rows = []
    for row in frame.itertuples(index=False):
        text = trace(row.text, rng, config.max_words)
        code = rng.choice(golds)
        rows.append({
            "prompt": task.messages(row.text),
            "completion": [{"role": "assistant", "content": sft_completion(text, code, task.PREFILL)}],
            "hadm_id": str(row.hadm_id),
            "subject_id": str(getattr(row, "subject_id", row.hadm_id)),
            "code": code,
            "trace_words": len(text.split()),
        })
    return pd.DataFrame(rows, columns=COLUMNS)


def build(data_dir: str | Path, split: str, out: str | Path, config: FormatDataConfig) -> int:
    """Write OUT/sft/train.parquet and OUT/manifest.json; returns the number of samples."""
    from deepicd.split_tables import read_notes

    if config.max_words < 1 or config.limit < 0:
        raise UserError("max_words must be at least 1 and limit not negative")
    frame = read_notes(data_dir, split)
    if config.limit:
        frame = frame.head(config.limit)
    if frame.empty:
        raise UserError(f"no notes in the {split} split of {data_dir}")
    table = samples(frame, config)
    out = Path(out)
    path = out / "sft" / "train.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    with manifest.atomic_open(path, "wb") as handle:
        table.to_parquet(handle, index=False)
    (out / "sft" / "val.parquet").unlink(missing_ok=True)
    data_file = Path(data_dir) / f"{split}.parquet"
    manifest.write_json(out / "manifest.json", {
        "stage": "format-data",
        "created": manifest.now(),
        "split": split,
        "prompts": {"target": TARGET},
        "config": {"seed": config.seed, "max_words": config.max_words, "limit": config.limit},
        "inputs": {str(data_file): manifest.sha256_file(data_file)},
        "outputs": {"sft/train.parquet": manifest.sha256_file(path)},
        "versions": manifest.versions(),
    })
    return len(table)
