"""Format-only SFT data for the demo's base: the task prompt, a short reasoning in the note's words that
names its body system, and a code from a chapter that is not the note's.

The paper starts GRPO from an instruction-tuned model: one that answers in
`<think>…</think><diagnosis>…</diagnosis>`, writes clinical words and knows
medicine, but has not been taught which code fits a note. A random-init tiny
model has none of this, and GRPO cannot learn from a reward it never earns.
This set gives the tiny model the first three and withholds the last: each
trace restates the note's chief complaint and names the body system of its
gold code ("..., which points to a respiratory disease"), and most answers
(all but `random_share`) are a code of the split drawn from another chapter,
through one fixed, seeded, shuffled map of chapters (respiratory ->
genitourinary, ...); the rest are drawn from the whole split. The base that
learns it answers in format and, greedily, in the wrong chapter for every
note it reads correctly (chapter F1 about 0, below the majority baseline).

Why not simply random codes: an answer trained to be independent of its
context stops attending to it. On the tiny model, the next-token
probabilities after `<diagnosis>` were then the same to two decimals whatever
the reasoning said, so no policy gradient could tie the answer to the note.
Here the answer depends on the reasoning, and GRPO has to learn, from the
reward alone, which chapter each body system belongs to.
"""

from __future__ import annotations

import dataclasses
import random
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from deepicd import icd, manifest
from deepicd.errors import UserError
from deepicd.schema import require, require_given

COLUMNS = ["prompt", "completion", "hadm_id", "subject_id", "code", "trace_words"]
TARGET = "format-only"
ANSWERS = "shuffled-chapters"

# The body system of each ICD-10-CM chapter (by number), as a reasoning would name it.
CHAPTER_SYSTEMS = {
    1: "an infection", 2: "a neoplasm", 3: "a blood disorder", 4: "a metabolic disease", 5: "a mental disorder",
    6: "a nervous system disease", 7: "an eye disease", 8: "an ear disease", 9: "a circulatory disease",
    10: "a respiratory disease", 11: "a digestive disease", 12: "a skin disease", 13: "a musculoskeletal disease",
    14: "a genitourinary disease", 15: "a complication of pregnancy", 16: "a perinatal condition",
    17: "a congenital anomaly", 18: "an unexplained finding", 19: "an injury", 20: "an external cause",
    21: "a health service contact", 22: "a special-purpose condition",
}

_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")


@dataclass
class FormatDataConfig:
    data: str = ""  # preprocess output folder holding SPLIT.parquet (--data)
    split: str = "train"  # which split's notes to use
    out: str = ""  # output folder: sft/train.parquet, manifest.json (--out)
    overwrite: bool = False  # replace what OUT holds when it is not this very set (--overwrite)
    seed: int = 0  # seeds the chapter map, the answers drawn and the sentences quoted
    max_words: int = 12  # words of note text in each trace; short enough to close </think> in a few dozen tokens
    limit: int = 0  # use only the first N notes of the split (0: all)
    # Share of the answers drawn from all codes of the split instead of through the chapter map: the base then
    # sometimes samples the right chapter, which GRPO needs to see before it can reinforce it.
    random_share: float = 0.2

    def __post_init__(self) -> None:
        where = "format-data setting"
        require(self.max_words >= 1, where, "max_words", "must be at least 1", self.max_words)
        require(self.limit >= 0, where, "limit", "must not be negative", self.limit)
        require(0.0 <= self.random_share <= 1.0, where, "random_share", "must be in [0, 1]", self.random_share)


@dataclass
class FormatDataResult:
    out: Path
    samples: int
    already_done: bool = False  # OUT held this very set; nothing was written


def sentences(text: str) -> list[str]:
    """Sentences of a note body with at least three words, headers and `___` spans left out."""
    body = re.sub(r"^[A-Z][A-Z /]+:\s*", "", text, flags=re.MULTILINE)
    parts = (part.strip() for part in _SENTENCE.split(body))
    return [p for p in parts if len(p.split()) >= 3 and "___" not in p and not p.endswith(":")]


def complaint(text: str) -> str | None:
    """The CHIEF COMPLAINT paragraph of an admission note, if it has one."""
    found = re.search(r"^CHIEF COMPLAINT:\s*(.+)$", text, flags=re.MULTILINE)
    return found.group(1).strip() if found and found.group(1).strip() else None


def chapter_number(code: str) -> int:
    chapter = icd.chapter(code)
    if chapter is None:
        raise UserError(f"{code!r} lies in no ICD-10-CM chapter")
    return chapter.number


def trace(text: str, gold: str, rng: random.Random, max_words: int) -> str:
    """A short reasoning in the note's own words that names the body system of its code.

    It restates the chief complaint's first clause (else the start of one of the note's sentences), cut to
    `max_words`, then names the system: where a clinician's reasoning starts, and the words later training
    ties to a chapter.
    """
    stated = complaint(text)
    if stated:
        words = ["The", "patient", "presents", "with", *stated.split(",")[0].split()][:max_words]
    else:
        words = rng.choice(sentences(text) or [text]).split()[:max_words]
    return " " + " ".join(words).rstrip(".,;:") + f", which points to {CHAPTER_SYSTEMS[chapter_number(gold)]}. "


def shuffled_chapters(chapters: list[int], rng: random.Random) -> dict[int, int]:
    """A map that sends every chapter to another one (a random derangement); needs two chapters or more."""
    if len(chapters) < 2:
        raise UserError("format data needs notes of at least two ICD-10-CM chapters, to answer each with another one")
    while True:
        targets = list(chapters)
        rng.shuffle(targets)
        if all(a != b for a, b in zip(chapters, targets)):
            return dict(zip(chapters, targets))


def samples(frame: pd.DataFrame, config: FormatDataConfig) -> tuple[pd.DataFrame, dict[int, int]]:
    """One sample per note, and the chapter map: each answer is a split code of the mapped chapter, drawn
    at the split's frequencies."""
    from deepicd.distill.filters import sft_completion
    from deepicd.prompts import task

    rng = random.Random(config.seed)
    golds = [icd.normalize(code) for code in frame["first_code"]]
    by_chapter: dict[int, list[str]] = defaultdict(list)
    for gold in golds:
        by_chapter[chapter_number(gold)].append(gold)
    chapter_map = shuffled_chapters(sorted(by_chapter), rng)
    rows = []
    for row, gold in zip(frame.itertuples(index=False), golds):
        text = trace(row.text, gold, rng, config.max_words)
        mapped = rng.random() >= config.random_share
        code = rng.choice(by_chapter[chapter_map[chapter_number(gold)]]) if mapped else rng.choice(golds)
        rows.append({
            "prompt": task.messages(row.text),
            "completion": [{"role": "assistant", "content": sft_completion(text, code, task.PREFILL)}],
            "hadm_id": str(row.hadm_id),
            "subject_id": str(getattr(row, "subject_id", row.hadm_id)),
            "code": code,
            "trace_words": len(text.split()),
        })
    return pd.DataFrame(rows, columns=COLUMNS), chapter_map


def run(config: FormatDataConfig) -> FormatDataResult:
    """Write OUT/sft/train.parquet and OUT/manifest.json (see deepicd.run_folder for what a rerun does)."""
    from deepicd import run_folder
    from deepicd.split_tables import read_notes

    require_given(config, "format-data setting", {"data": "--data", "out": "--out"})
    out, split = Path(config.out), config.split
    inputs = {split: Path(config.data) / f"{split}.parquet"}
    run_folder.refuse_overlap([out / "sft" / "train.parquet", out / manifest.FILE], inputs)
    done = run_folder.previous_run(out, "format-data", dataclasses.asdict(config), inputs,
                                   overwrite=config.overwrite, ignore=("data", "out", "overwrite"))
    if done is not None:
        return FormatDataResult(out, done["result"]["samples"], already_done=True)
    frame = read_notes(config.data, split)
    if config.limit:
        frame = frame.head(config.limit)
    if frame.empty:
        raise UserError(f"no notes in the {split} split of {config.data}")
    table, chapter_map = samples(frame, config)
    path = out / "sft" / "train.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    with manifest.atomic_open(path, "wb") as handle:
        table.to_parquet(handle, index=False)
    (out / "sft" / "val.parquet").unlink(missing_ok=True)
    entry = manifest.record(
        "format-data", config=dataclasses.asdict(config), seed=config.seed,
        inputs=inputs,
        prompts={"target": TARGET, "answers": ANSWERS},
        result={"split": split, "samples": len(table),
                "chapter_map": {icd.chapters()[a - 1].roman: icd.chapters()[b - 1].roman
                                for a, b in chapter_map.items()}},
    )
    manifest.write(out, entry, outputs=manifest.describe_outputs(out, ["sft/train.parquet"]))
    return FormatDataResult(out, len(table))
