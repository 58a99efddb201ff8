"""Figure 4 of the paper: how many SFT samples a chapter had against how well it is predicted.

The paper plots per-chapter F1 against the number of SFT samples per chapter
and groups the chapters into terciles by sample mass (the head being the most
frequent chapters until a third of the samples is covered). `deepicd report
--sft-stats FILE` draws the same from files already on disk: the SFT samples
per chapter from the `stats.json` that `deepicd distill` (or `deepicd
sft-data`) wrote (its `per_chapter` rows: `chapter` like "09 IX (I00-I99)",
`kept`), and the per-chapter F1 from each evaluation's metrics.json.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from deepicd.errors import UserError
from deepicd.evaluate.metrics import TERCILES, mass_groups
from deepicd.evaluate.table import Run
from deepicd.manifest import write_text

FIGURE = "sft_samples_vs_f1.png"
TABLE = "sft_samples_vs_f1.csv"
_SHADES = ("#e8f1f8", "#f4f4f4", "#fbf0e6")


FILES = (FIGURE, TABLE)


def stats_file(path: Path) -> Path:
    """A distillation's stats.json, given it or its folder."""
    path = Path(path)
    return path / "stats.json" if path.is_dir() else path


def read_sft_counts(path: Path) -> dict[str, int]:
    """Chapter (Roman numeral) -> SFT samples, from a distillation's stats.json (or its folder)."""
    path = stats_file(path)
    if not path.is_file():
        raise UserError(f"SFT stats file not found: {path} (give the stats.json that `deepicd distill` wrote)")
    try:
        stats = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    rows = stats.get("per_chapter") if isinstance(stats, dict) else None
    if not isinstance(rows, list):
        raise UserError(f"{path} has no 'per_chapter' list; is it the stats.json of `deepicd distill`?")
    counts: dict[str, int] = {}
    for number, row in enumerate(rows):
        if not isinstance(row, dict) or not isinstance(row.get("chapter"), str) or not isinstance(row.get("kept"), int):
            raise UserError(f"{path}: per_chapter[{number}] needs a 'chapter' string and a 'kept' count")
        parts = row["chapter"].split()
        if len(parts) >= 2 and parts[0].isdigit():  # "09 IX (I00-I99)"; "?? (no chapter)" has no chapter
            counts[parts[1]] = counts.get(parts[1], 0) + row["kept"]
    if not counts:
        raise UserError(f"{path}: 'per_chapter' names no chapter")
    return counts


def chapter_terciles(counts: dict[str, int]) -> dict[str, str]:
    """Chapter -> head / medium / tail by SFT sample mass, most frequent chapters first (ties by name)."""
    ordered = sorted(counts, key=lambda c: (-counts[c], c))
    groups = mass_groups(np.asarray([counts[c] for c in ordered], dtype=np.float64))
    return {chapter: TERCILES[group] for chapter, group in zip(ordered, groups)}


def _f1(run: Run) -> dict[str, float]:
    return {str(r["chapter"]): float(r["f1"]) for r in run.metrics.get("per_chapter", []) if r.get("support", 0) > 0}


def points(runs: list[Run], counts: dict[str, int]) -> list[dict[str, object]]:
    """One row per run and evaluated chapter: SFT samples, tercile, F1 (chapters of the stats file with no test note are left out)."""
    terciles = chapter_terciles(counts)
    out = []
    for run in runs:
        for chapter, f1 in _f1(run).items():
            out.append({"run": run.name, "chapter": chapter, "sft_samples": int(counts.get(chapter, 0)),
                        "tercile": terciles.get(chapter, "tail"), "f1": round(f1 * 100, 1)})
    return out


def _csv(rows: list[dict[str, object]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["run", "chapter", "sft_samples", "tercile", "f1"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def draw(runs: list[Run], counts: dict[str, int], path: Path) -> Path:
    """Per-chapter F1 (%) of each run against the chapter's SFT samples, the three mass terciles shaded."""
    from deepicd.evaluate.plots import _pyplot, _save

    if not any(run.metrics.get("per_chapter") for run in runs):
        raise UserError("no evaluation given to `deepicd report` has per-chapter scores (metrics.json 'per_chapter')")
    plt = _pyplot()
    terciles = chapter_terciles(counts)
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    try:
        for shade, name in zip(_SHADES, TERCILES):
            members = [counts[c] for c, t in terciles.items() if t == name]
            if members:
                ax.axvspan(min(members) * 0.9, max(members) * 1.1, color=shade, zorder=0, label=f"{name} tercile")
        shown: set[str] = set()
        for run in runs:
            f1 = _f1(run)
            chapters = sorted(f1, key=lambda c: counts.get(c, 0))
            x = [counts.get(c, 0) for c in chapters]
            y = [f1[c] * 100 for c in chapters]
            ax.plot(x, y, marker="o", linestyle="-", linewidth=0.8, label=run.name, zorder=2)
            shown.update(chapters)
        for chapter in shown:  # chapter names along the top, one per x position
            ax.text(counts.get(chapter, 0), 104, chapter, rotation=90, fontsize=7, ha="center", va="bottom")
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xlabel("SFT samples of the chapter")
        ax.set_ylabel("chapter F1 (%)")
        ax.set_ylim(-2, 102)
        ax.set_title("Per-chapter F1 against SFT samples (Figure 4)\nshading: chapter terciles by SFT sample mass", pad=28)
        ax.legend(fontsize=7, loc="best")
        _save(fig, path)
    finally:
        plt.close(fig)
    return path


def write(runs: list[Run], stats_path: Path, out: Path) -> tuple[Path, Path, str]:
    """The figure and its numbers (CSV) in `out`, and a Markdown summary of the terciles."""
    counts = read_sft_counts(stats_path)
    figure = draw(runs, counts, out / FIGURE)
    rows = points(runs, counts)
    table = out / TABLE
    write_text(table, _csv(rows))
    terciles = chapter_terciles(counts)
    total = sum(counts.values()) or 1
    lines = ["Chapter terciles by SFT sample mass (Figure 4):", ""]
    for name in TERCILES:
        members = [c for c, t in terciles.items() if t == name]
        share = sum(counts[c] for c in members) / total * 100
        means = []
        for run in runs:
            f1 = [float(r["f1"]) for r in rows if r["run"] == run.name and r["tercile"] == name]
            means.append(f"{run.name} {np.mean(f1):.1f}" if f1 else f"{run.name} –")
        lines.append(f"- {name}: {', '.join(members)} ({share:.1f}% of SFT samples); mean chapter F1 %: {'; '.join(means)}")
    return figure, table, "\n".join(lines) + "\n"
