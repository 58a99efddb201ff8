"""The figures of a distilled SFT set: the paper's Table 2, per-chapter counts, and what was filtered.

DeepICD-R1 describes its SFT set by sample count, unique codes and trace length
in words (mean, min, max). We report the same, plus what the paper could not:
how many teacher outputs each filter removed and how the kept samples spread
over the ICD-10-CM chapters, since a filter that hits one chapter hard skews
the student.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from deepicd import icd
from deepicd.distill.filters import REASONS, Verdict

# Table 2 of the paper (its set distilled train, validation and test notes, unfiltered).
PAPER_TABLE2 = {"samples": 93142, "unique_codes": 6368, "mean_words": 477.3, "min_words": 31, "max_words": 883}


@dataclass
class DistillStats:
    """Counts gathered while filtering; `as_dict` is what stats.json holds."""

    admissions: int = 0  # admissions in the input split
    generated: int = 0  # admissions with a stored teacher output
    completions: int = 0  # teacher completions judged (n per admission)
    kept: int = 0  # admissions with a kept completion = SFT samples
    repaired: int = 0  # kept samples whose answer was replaced by the gold code (filters.repair_answer)
    rejected: Counter = field(default_factory=Counter)  # completions, by first failing check
    backend_errors: int = 0  # requests the backend gave up on in this run (retried next run)
    words: list[int] = field(default_factory=list)
    codes: Counter = field(default_factory=Counter)
    chapter_generated: Counter = field(default_factory=Counter)
    chapter_kept: Counter = field(default_factory=Counter)
    sft_train: int = 0
    sft_val: int = 0

    def add(self, gold: str, verdicts: list[Verdict]) -> Verdict | None:
        """Count one admission's completions; return the first kept verdict, if any."""
        self.generated += 1
        chapter = _chapter_key(gold)
        self.chapter_generated[chapter] += 1
        chosen = None
        for verdict in verdicts:
            self.completions += 1
            if verdict.kept:
                chosen = chosen or verdict
            else:
                self.rejected[verdict.reason] += 1
        if chosen is not None:
            self.kept += 1
            self.repaired += chosen.repaired
            self.words.append(chosen.words)
            self.codes[icd.normalize(gold)] += 1
            self.chapter_kept[chapter] += 1
        return chosen

    def table2(self) -> dict[str, float | int | None]:
        if not self.words:
            return {"samples": 0, "unique_codes": 0, "mean_words": None, "min_words": None, "max_words": None}
        return {
            "samples": self.kept,
            "unique_codes": len(self.codes),
            "mean_words": round(sum(self.words) / len(self.words), 1),
            "min_words": min(self.words),
            "max_words": max(self.words),
        }

    def per_chapter(self) -> list[dict]:
        rows = []
        for key in sorted(self.chapter_generated, key=_chapter_order):
            generated, kept = self.chapter_generated[key], self.chapter_kept[key]
            rows.append({"chapter": key, "generated": generated, "kept": kept, "kept_rate": _rate(kept, generated)})
        return rows

    def as_dict(self) -> dict:
        return {
            "table2": self.table2(),
            "paper_table2": PAPER_TABLE2,
            "admissions": self.admissions,
            "generated": self.generated,
            "missing": self.admissions - self.generated,
            "backend_errors": self.backend_errors,
            "completions": self.completions,
            "kept": self.kept,
            "kept_rate": _rate(self.kept, self.generated),
            "answers_repaired": self.repaired,
            "rejected": {reason: self.rejected.get(reason, 0) for reason in REASONS},
            "per_chapter": self.per_chapter(),
            "sft_train": self.sft_train,
            "sft_val": self.sft_val,
        }


def _chapter_key(code: str) -> str:
    chapter = icd.chapter(code)
    return f"{chapter.number:02d} {chapter.roman} ({chapter.range})" if chapter else "?? (no chapter)"


def _chapter_order(key: str) -> tuple[int, str]:
    head = key.split(" ", 1)[0]
    return (int(head), key) if head.isdigit() else (99, key)


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _cell(value: object) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _pct(rate: float | None) -> str:
    return "–" if rate is None else f"{100 * rate:.1f}%"


def _split_line(stats: dict) -> str:
    """How the kept samples were split; with no validation samples, say so rather than print a 0."""
    if not stats["sft_val"]:
        return f"All {stats['sft_train']:,} samples are training samples (no patients held out for validation)."
    return (
        f"Split into {stats['sft_train']:,} training and {stats['sft_val']:,} validation samples "
        "(patient-disjoint)."
    )


def report_markdown(stats: dict, *, split: str, teacher: str, prompt_version: str) -> str:
    """report.md: Table 2 beside the paper's, filter counts, and per-chapter counts."""
    table, paper = stats["table2"], stats["paper_table2"]
    columns = ("samples", "unique_codes", "mean_words", "min_words", "max_words")
    lines = [
        f"# Distillation report ({split} split)",
        "",
        f"Teacher `{teacher}`, oracle prompt `{prompt_version}`. {stats['generated']:,} of "
        f"{stats['admissions']:,} admissions have a teacher output; {stats['missing']:,} still to generate "
        f"({stats['backend_errors']:,} failed at the backend in the last run; a rerun retries them).",
        "",
        "## SFT set (Table 2)",
        "",
        "| | samples | unique codes | mean words | min words | max words |",
        "|---|---:|---:|---:|---:|---:|",
        "| this run | " + " | ".join(_cell(table[c]) for c in columns) + " |",
        "| paper (unfiltered; train+val+test) | " + " | ".join(_cell(paper[c]) for c in columns) + " |",
        "",
        _split_line(stats),
        "",
        "## Filters",
        "",
        f"{stats['completions']:,} completions judged; {stats['kept']:,} of {stats['generated']:,} admissions kept "
        f"({_pct(stats['kept_rate'])}). Each rejected completion counts under its first failing check:",
        "",
        "| reason | completions |",
        "|---|---:|",
    ]
    lines += [f"| {reason} | {count:,} |" for reason, count in stats["rejected"].items()]
    if stats.get("answers_repaired"):
        lines += [
            "",
            f"**{stats['answers_repaired']:,} kept samples had their answer replaced by the gold code** "
            "(`filters.repair_answer`): the teacher could not answer itself, so only its reasoning is its own.",
        ]
    lines += ["", "## Per chapter", "", "| chapter | generated | kept | kept rate |", "|---|---:|---:|---:|"]
    lines += [
        f"| {row['chapter']} | {row['generated']:,} | {row['kept']:,} | {_pct(row['kept_rate'])} |"
        for row in stats["per_chapter"]
    ]
    return "\n".join(lines) + "\n"
