"""`deepicd report`: several evaluations side by side, shaped like the paper's Table 3.

Each run contributes macro recall, precision and F1 at chapter, category and
full-code level, as percentages with one decimal. Runs are grouped the way the
paper groups them (Baselines, GRPO, SFT, SFT+GRPO) by the `method` or `stage`
their evaluation manifest records; a run that records neither lands in Other.

Beside the paper's columns, each row shows its format rate (well-formed
answers, the first thing a small model gets wrong) and, when the evaluation
drew them, bootstrap intervals of F1; the Baselines group gains the majority
row (always the most frequent train label) that every model must beat.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from deepicd.errors import UserError
from deepicd.evaluate.labels import LEVELS
from deepicd.manifest import write_text

GROUPS = ("Baselines", "GRPO", "SFT", "SFT+GRPO", "Other")
COLUMNS = (("macro_recall", "R"), ("macro_precision", "P"), ("macro_f1", "F1"))
LEVEL_HEADERS = {"chapter": "Chapter", "category": "Category", "full_code": "Full code"}
_ALIASES = {
    "Baselines": {"baseline", "baselines", "base", "instruct", "zero-shot", "zeroshot", "majority"},
    "GRPO": {"grpo", "r1-zero", "rl", "train-grpo"},
    "SFT": {"sft", "distill-sft"},
    "SFT+GRPO": {"sft+grpo", "sft-grpo", "sftgrpo", "sft-then-grpo"},
}
_GENERIC_DIRS = {"eval", "evaluation", "evaluate", "test", "val"}


def group_of(label: str | None) -> str:
    """The Table 3 group of a manifest's method/stage label ("sft_grpo" -> "SFT+GRPO")."""
    if not label:
        return "Other"
    key = str(label).strip().lower().replace("_", "-").replace(" ", "-")
    for group, aliases in _ALIASES.items():
        if key in aliases:
            return group
    return "Other"


@dataclass
class Run:
    name: str
    group: str
    label: str
    folder: Path
    metrics: dict
    manifest: dict = field(default_factory=dict)  # the evaluation's manifest.json ({} without one)


FILES = ("table3.md", "table3.csv")


def metrics_file(path: Path) -> Path:
    """The metrics.json of an evaluation folder, of a run folder holding eval/, or the file itself."""
    if path.is_file():
        return path
    for candidate in (path / "metrics.json", path / "eval" / "metrics.json"):
        if candidate.is_file():
            return candidate
    if not path.exists():
        raise UserError(f"run folder not found: {path}")
    raise UserError(f"no metrics.json in {path} (nor in {path / 'eval'}); run `deepicd evaluate` first")


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} holds {type(data).__name__}, expected a JSON object")
    return data


def load_run(path: Path) -> Run:
    """One evaluation: its metrics and, from the manifest beside them, its name and group."""
    metrics_path = metrics_file(path)
    metrics = _read_json(metrics_path)
    for level in LEVELS:
        scores = metrics.get(level)
        if not isinstance(scores, dict):
            raise UserError(f"{metrics_path} lacks the '{level}' scores; is it a deepicd evaluation?")
        for key, _ in COLUMNS:
            if not isinstance(scores.get(key), (int, float)):
                raise UserError(f"{metrics_path} lacks '{level}.{key}'")
    folder = metrics_path.parent
    manifest_path = folder / "manifest.json"
    manifest = _read_json(manifest_path) if manifest_path.is_file() else {}
    label = str(manifest.get("method") or "")
    name = str(manifest.get("run_name") or "")
    if not name:
        name = folder.parent.name if folder.name in _GENERIC_DIRS and folder.parent.name else folder.name
    return Run(name, group_of(label), label, folder, metrics, manifest)


def load_runs(paths: list[Path]) -> list[Run]:
    if not paths:
        raise UserError("give at least one evaluation folder")
    runs = [load_run(Path(p)) for p in paths]
    seen: dict[str, int] = {}
    for run in runs:
        seen[run.name] = seen.get(run.name, 0) + 1
    for run in runs:
        if seen[run.name] > 1:  # same folder name twice: tell them apart by their path
            run.name = str(run.folder)
    return runs


def _percent(value) -> float | None:
    return round(float(value) * 100, 1) if isinstance(value, (int, float)) else None


def row_of(run: Run, group: str | None = None) -> dict[str, object]:
    """One table row: name, group (or `group`), scores in percent with one decimal, F1 interval, format rate, n."""
    row: dict[str, object] = {"group": group or run.group, "run": run.name}
    intervals = run.metrics.get("intervals") or {}
    for level in LEVELS:
        for key, short in COLUMNS:
            row[f"{level}_{short}"] = round(float(run.metrics[level][key]) * 100, 1)
        bounds = (intervals.get(level) or {}).get("macro_f1") or (None, None)
        row[f"{level}_F1_lo"], row[f"{level}_F1_hi"] = _percent(bounds[0]), _percent(bounds[1])
    row["format"] = _percent(run.metrics.get("format_rate"))
    row["n"] = run.metrics.get("n", "")
    return row


def majority_row(runs: list[Run]) -> dict[str, object] | None:
    """The majority baseline of the first run that recorded one (runs on the same test notes share it)."""
    for run in runs:
        baselines = run.metrics.get("baselines") or {}
        scores = baselines.get("majority_scores")
        if not scores:
            continue
        row: dict[str, object] = {"group": "Baselines", "run": f"majority ({baselines.get('majority_source', 'train')})"}
        for level in LEVELS:
            for key, short in COLUMNS:
                row[f"{level}_{short}"] = _percent(scores[level][key])
            row[f"{level}_F1_lo"] = row[f"{level}_F1_hi"] = None
        row["format"] = None
        row["n"] = run.metrics.get("n", "")
        return row
    return None


def rows(runs: list[Run]) -> list[dict[str, object]]:
    """One row per run, grouped in Table 3 order (input order within a group), the majority row last of the
    Baselines; scores in percent, one decimal."""
    ordered = [row_of(run) for run in sorted(runs, key=lambda r: GROUPS.index(r.group))]
    majority = majority_row(runs)
    if majority is not None:
        at = sum(row["group"] == "Baselines" for row in ordered)
        ordered.insert(at, majority)
    return ordered


TABLE3_NOTE = (
    "Macro recall (R), precision (P) and F1 in percent, per level, as in Table 3 of the paper; brackets: the "
    "evaluation's bootstrap interval of F1; Format: well-formed answers (%); majority: the most frequent train "
    "label at every level."
)


def _cell(value) -> str:
    return "–" if value is None or value == "" else f"{value:.1f}"


def _f1_cell(row: dict[str, object], level: str) -> str:
    low, high = row.get(f"{level}_F1_lo"), row.get(f"{level}_F1_hi")
    interval = f" [{low:.1f}, {high:.1f}]" if low is not None and high is not None else ""
    return _cell(row[f"{level}_F1"]) + interval


def to_markdown(table: list[dict[str, object]], note: str = TABLE3_NOTE) -> str:
    header = ["Model"] + [f"{LEVEL_HEADERS[level]} {short}" for level in LEVELS for _, short in COLUMNS] + ["Format"]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "|".join("---:" for _ in header[1:]) + "|"]
    current = None
    for row in table:
        if row["group"] != current:
            current = row["group"]
            lines.append(f"| **{current}** |" + " |" * (len(header) - 1))
        values = [_f1_cell(row, level) if short == "F1" else _cell(row[f"{level}_{short}"])
                  for level in LEVELS for _, short in COLUMNS]
        lines.append("| " + " | ".join([str(row["run"])] + values + [_cell(row.get("format"))]) + " |")
    return "\n".join(lines) + "\n\n" + note + "\n"


def to_csv(table: list[dict[str, object]]) -> str:
    fields = (["group", "run"] + [f"{level}_{short}" for level in LEVELS for _, short in COLUMNS]
              + [f"{level}_F1_{end}" for level in LEVELS for end in ("lo", "hi")] + ["format", "n"])
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in table:
        writer.writerow({k: (f"{v:.1f}" if isinstance(v, float) else "" if v is None else v) for k, v in row.items()})
    return buffer.getvalue()


def write(runs: list[Run], out: Path) -> tuple[str, Path, Path]:
    """table3.md and table3.csv in `out`; returns the Markdown and both paths."""
    table = rows(runs)
    markdown = to_markdown(table)
    md_path, csv_path = out / "table3.md", out / "table3.csv"
    write_text(md_path, markdown)
    write_text(csv_path, to_csv(table))
    return markdown, md_path, csv_path
