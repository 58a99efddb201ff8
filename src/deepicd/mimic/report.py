"""The human-readable account of a preprocessing run (`report.md`).

Everything a reader needs to trust a dataset without opening it: how many
admissions were dropped and why, what the splits hold per chapter, how much of
val/test the training label space covers, and how long the notes are. The text
depends only on the data and the config, so two identical runs write the same
report.
"""

from __future__ import annotations

from collections import Counter
from typing import Mapping, Sequence

import numpy as np

from deepicd.mimic.ontology import Ontology
from deepicd.mimic.splits import SPLITS


def _pct(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "-"


def length_stats(values: Sequence[int]) -> dict[str, float]:
    if len(values) == 0:
        return {"count": 0, "mean": 0.0, "p5": 0.0, "median": 0.0, "p95": 0.0, "max": 0.0}
    array = np.asarray(values, dtype=np.float64)
    p5, median, p95 = np.percentile(array, [5, 50, 95])
    return {
        "count": int(array.size), "mean": round(float(array.mean()), 1), "p5": float(p5),
        "median": float(median), "p95": float(p95), "max": float(array.max()),
    }


def coverage(train_codes: Sequence[str], codes: Sequence[str], level: str, ontology: Ontology) -> float:
    """Share of `codes` whose code / category / chapter occurs among the train first codes."""
    def key(code: str) -> object:
        if level == "category":
            return ontology.codes[code].category
        if level == "chapter":
            return ontology.codes[code].chapter
        return code

    seen = {key(code) for code in set(train_codes)}
    return sum(key(code) in seen for code in codes) / len(codes) if codes else float("nan")


def render(
    *,
    funnel: Sequence[tuple[str, int]],
    admissions: int,
    side_counts: Mapping[str, int],
    split_codes: Mapping[str, Sequence[str]],
    split_patients: Mapping[str, int],
    chapters: Mapping[str, Sequence[int | None]],
    words: Mapping[str, Sequence[int]],
    section_counts: Counter,
    config_lines: Sequence[str],
    versions: Mapping[str, str | None],
    ontology: Ontology,
) -> str:
    kept = sum(len(split_codes[s]) for s in SPLITS)
    out = ["# Preprocessing report", ""]
    found = ", ".join(f"{k} {v}" for k, v in versions.items() if v) or "not detected from the folder names"
    out += [f"MIMIC versions: {found}.", ""]
    out += ["## Admissions kept and dropped", "", "| step | admissions | share |", "|---|---:|---:|"]
    out.append(f"| admissions in admissions.csv.gz | {admissions} | 100.0% |")
    for reason, count in funnel:
        out.append(f"| dropped: {reason} | {count} | {_pct(count, admissions)} |")
    out += [f"| **kept** | **{kept}** | **{_pct(kept, admissions)}** |", ""]
    if side_counts:
        out += ["Other checks:", ""]
        out += [f"- {name}: {count}" for name, count in side_counts.items()]
        out.append("")

    out += ["## Splits", "", "| split | admissions | patients | distinct first codes |", "|---|---:|---:|---:|"]
    for split in SPLITS:
        codes = split_codes[split]
        out.append(f"| {split} | {len(codes)} | {split_patients[split]} | {len(set(codes))} |")
    out.append("")

    train = split_codes["train"]
    out += ["## Label coverage by the training label space", "",
            "| split | full code | category | chapter |", "|---|---:|---:|---:|"]
    for split in ("val", "test"):
        cells = [coverage(train, split_codes[split], level, ontology) for level in ("code", "category", "chapter")]
        out.append(f"| {split} | " + " | ".join("-" if np.isnan(c) else f"{100 * c:.1f}%" for c in cells) + " |")
    out.append("")

    out += ["## First codes per chapter", "", "| chapter | title | train | val | test |", "|---|---|---:|---:|---:|"]
    per_split = {split: Counter(chapters[split]) for split in SPLITS}
    for number, roman, title in ontology.chapters:
        cells = [per_split[s].get(number, 0) for s in SPLITS]
        if any(cells):
            out.append(f"| {roman} | {title} | " + " | ".join(map(str, cells)) + " |")
    unknown = [per_split[s].get(None, 0) for s in SPLITS]
    if any(unknown):
        out.append("| - | outside every chapter | " + " | ".join(map(str, unknown)) + " |")
    out.append("")

    out += ["## Admission-note length (words)", "", "| split | notes | mean | p5 | median | p95 | max |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    for split in SPLITS:
        s = length_stats(words[split])
        out.append(f"| {split} | {s['count']} | {s['mean']} | {s['p5']:.0f} | {s['median']:.0f} | "
                   f"{s['p95']:.0f} | {s['max']:.0f} |")
    out.append("")

    out += ["## Sections present in kept notes", "", "| section | notes | share |", "|---|---:|---:|"]
    for section, count in section_counts.items():
        out.append(f"| {section} | {count} | {_pct(count, kept)} |")
    out += ["", "## Configuration", "", "```yaml", *config_lines, "```", ""]
    return "\n".join(out)
