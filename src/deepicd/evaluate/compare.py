"""The `report` stage: Table 3 across evaluations, Table 4 and Figure 4 when the runs allow them.

Like every stage it has one config and one entry point, `run(config)`, and
follows `deepicd.run_folder`: the same evaluations (by the content of their
metrics and manifests) reported again into the same folder do nothing; other
evaluations there need `overwrite`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from deepicd import manifest, run_folder
from deepicd.errors import UserError
from deepicd.schema import require_given


@dataclass
class ReportConfig:
    runs: list[str] = field(default_factory=list)  # evaluation folders (or run folders with eval/, or metrics.json)
    out: str = ""  # folder for table3.*, table4.*, sft_samples_vs_f1.* and manifest.json (--out)
    sft_stats: str = ""  # `deepicd distill` stats.json (or its folder): draws Figure 4 (--sft-stats)
    overwrite: bool = False  # replace a report of other evaluations in OUT (--overwrite)


@dataclass
class ReportResult:
    out: Path
    table3: str  # Table 3 as Markdown
    table4: str | None  # Table 4 as Markdown, when an outcome-only run is among the runs
    figure4: str | None  # the Figure 4 tercile summary, with --sft-stats
    written: list[Path]
    already_done: bool = False  # OUT held this very report; nothing was written


def _inputs(config: ReportConfig) -> dict[str, Path | None]:
    """Every file the report reads: each run's metrics and manifest, and the SFT statistics."""
    from deepicd.evaluate import figure4, table

    inputs: dict[str, Path | None] = {}
    for index, path in enumerate(config.runs):
        metrics = table.metrics_file(Path(path))
        inputs[f"run-{index}"] = metrics
        inputs[f"run-{index}-manifest"] = metrics.parent / manifest.FILE
    inputs["sft_stats"] = figure4.stats_file(Path(config.sft_stats)) if config.sft_stats else None
    return inputs


def run(config: ReportConfig) -> ReportResult:
    """Write the tables (and the figure) for `config.runs` into `config.out`."""
    from deepicd.evaluate import figure4, table, table4

    require_given(config, "report config", {"out": "--out"})
    if not config.runs:
        raise UserError("give at least one evaluation folder")
    out = Path(config.out)
    inputs = _inputs(config)
    outputs = [out / name for name in (*table.FILES, *table4.FILES, *figure4.FILES, manifest.FILE)]
    run_folder.refuse_overlap(outputs, inputs)
    done = run_folder.previous_run(out, "report", asdict(config), inputs, overwrite=config.overwrite,
                                   ignore=("runs", "out", "sft_stats", "overwrite"))
    if done is not None:
        result = done["result"]
        return ReportResult(out, result["table3"], result["table4"], result["figure4"],
                            [out / name for name in done["outputs"]], already_done=True)
    loaded = table.load_runs([Path(p) for p in config.runs])
    out.mkdir(parents=True, exist_ok=True)
    markdown, md_path, csv_path = table.write(loaded, out)
    written = [md_path, csv_path]
    fourth = table4.write(loaded, out)
    if fourth is not None:
        written += [fourth[1], fourth[2]]
    figure = figure4.write(loaded, Path(config.sft_stats), out) if config.sft_stats else None
    if figure is not None:
        written += [figure[0], figure[1]]
    result = {"runs": [str(run.folder) for run in loaded], "table3": markdown,
              "table4": fourth[0] if fourth else None, "figure4": figure[2] if figure else None}
    entry = manifest.record("report", config=asdict(config), inputs=inputs, result=result,
                            packages=("deepicd", "numpy", "matplotlib"))
    manifest.write(out, entry, outputs=manifest.describe_outputs(out, [p.name for p in written]))
    return ReportResult(out, markdown, result["table4"], result["figure4"], written)
