"""`deepicd report`, Table 4: fine-tuning on reasoning plus answer against fine-tuning on the answer alone.

The paper's Table 4 asks whether the reasoning in the SFT targets helps. A run's
kind is what its evaluation manifest records as `target` (`deepicd evaluate`
takes it from the model's training manifest: `deepicd sft-data` marks
outcome-only data, `deepicd distill` reasoning traces; without either, from the
prompt it evaluated with: code-only means outcome-only). The table holds the
fine-tuned runs (SFT and SFT+GRPO groups of Table 3) and every outcome-only
run, in the Table 3 columns; it is written only when an outcome-only run is
there to compare with.
"""

from __future__ import annotations

from pathlib import Path

from deepicd.evaluate.table import GROUPS, Run, row_of, to_csv, to_markdown
from deepicd.manifest import write_text

KINDS = {"reasoning+outcome": "Reasoning + outcome", "outcome-only": "Outcome only"}
NOTE = (
    "Macro recall (R), precision (P) and F1 in percent, per level, as in Table 4 of the paper: models fine-tuned "
    "on reasoning and answer (distilled traces) against models fine-tuned on the answer alone (`deepicd sft-data`, "
    "evaluated with `--code-only`)."
)


def target_of(run: Run) -> str:
    """outcome-only or reasoning+outcome, from the evaluation manifest (without one: from its prompt setting)."""
    prompts = run.manifest.get("prompts")
    target = prompts.get("target") if isinstance(prompts, dict) else None
    if target in KINDS:
        return str(target)
    config = run.manifest.get("config") or {}
    return "outcome-only" if isinstance(config, dict) and config.get("prompt") == "code-only" else "reasoning+outcome"


def table4_runs(runs: list[Run]) -> list[Run]:
    """The runs Table 4 compares; empty when none is outcome-only (there is nothing to compare)."""
    chosen = [run for run in runs if target_of(run) == "outcome-only" or run.group in ("SFT", "SFT+GRPO")]
    return chosen if any(target_of(run) == "outcome-only" for run in chosen) else []


def table4_rows(runs: list[Run]) -> list[dict[str, object]]:
    """Table 3 rows regrouped by training target: reasoning + outcome first, then outcome only."""
    ordered = sorted(runs, key=lambda run: GROUPS.index(run.group))  # SFT before SFT+GRPO, as in Table 3
    return [row_of(run, title) for kind, title in KINDS.items() for run in ordered if target_of(run) == kind]


FILES = ("table4.md", "table4.csv")


def write(runs: list[Run], out: Path) -> tuple[str, Path, Path] | None:
    """table4.md and table4.csv in `out` when the runs allow a Table 4; None otherwise."""
    chosen = table4_runs(runs)
    if not chosen:
        return None
    table = table4_rows(chosen)
    markdown = to_markdown(table, NOTE)
    md_path, csv_path = out / "table4.md", out / "table4.csv"
    write_text(md_path, markdown)
    write_text(csv_path, to_csv(table))
    return markdown, md_path, csv_path
