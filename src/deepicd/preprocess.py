"""The `preprocess` stage: MIMIC-IV (+ MIMIC-IV-Note) in, admission-note datasets out.

The stage's configuration and its one entry point, `run`. Reading and
filtering live in `deepicd.mimic.collect`, the files in `deepicd.mimic.outputs`;
the ICD-10-CM release loads meanwhile in a side process (`OntologyService`).

Outputs are written into a temporary folder beside `--out` and renamed into
place at the end, so an interrupted run leaves nothing half-written, and an
existing dataset is only replaced with `overwrite=true`. Tables are a pure
function of the inputs and the config: rerunning gives byte-identical files.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pyarrow as pa

from deepicd import config as config_lib
from deepicd import manifest, run_folder
from deepicd.manifest import staged_directory
from deepicd.errors import UserError
from deepicd.mimic import sections
from deepicd.mimic.collect import collect, locate_inputs
from deepicd.mimic.ontology import OntologyService
from deepicd.mimic.outputs import write_outputs
from deepicd.prompts import task
from deepicd.schema import require, require_given

DATA_SOURCE = "deepicd/mimic-iv"
WHERE = "preprocess config"


@dataclass
class SplitConfig:
    """Shares of train/val/test (normalised to sum 1) and the stratification threshold."""

    train: float = 0.7  # share of patients (and so of admissions) in the training split
    val: float = 0.1  # share in the validation split
    test: float = 0.2  # share in the test split
    min_count: int = 5  # first codes seen fewer times go to train with all of their patients' admissions

    def __post_init__(self) -> None:
        ratios = (self.train, self.val, self.test)
        for key, value in zip(("train", "val", "test"), ratios):
            require(value >= 0, WHERE, f"split.{key}", "split ratios must be non-negative", value)
        require(sum(ratios) > 0, WHERE, "split", "split ratios must have a positive sum", list(ratios))
        require(self.min_count >= 0, WHERE, "split.min_count", "must not be negative", self.min_count)


@dataclass
class NoteConfig:
    """Which discharge-summary sections make the admission note, in order."""

    # Admission-time sections, in note order; a discharge-time section (hospital course, results) leaks the answer.
    sections: list[str] = field(default_factory=lambda: list(sections.ADMISSION_SECTIONS))
    require_any: list[str] = field(default_factory=lambda: list(sections.REQUIRED_ANY))  # a note needs one of these

    def __post_init__(self) -> None:
        known = set(sections.SECTION_HEADERS.values())
        unknown = [s for s in self.sections if s not in known]
        require(not unknown, WHERE, "note.sections", f"unknown section(s); known: {', '.join(sorted(known))}", unknown)
        stray = [s for s in self.require_any if s not in self.sections]
        require(bool(self.require_any) and not stray, WHERE, "note.require_any",
                "must be a non-empty subset of note.sections", self.require_any)


@dataclass
class PreprocessConfig:
    """Schema of `configs/preprocess/*.yaml`; the CLI fills the paths."""

    mimic_dir: str = ""  # MIMIC-IV root: holds hosp/ (or the hosp tables themselves)
    note_dir: Optional[str] = None  # MIMIC-IV-Note root (holds note/); default: mimic_dir
    out: str = ""  # output folder (--out)
    overwrite: bool = False  # replace an existing output folder, once the new one is complete (--overwrite)
    seed: int = 42  # seeds the patient-level split and the row order
    data_source: str = DATA_SOURCE  # `data_source` of the VERL rows
    split: SplitConfig = field(default_factory=SplitConfig)  # patient-disjoint train/val/test
    note: NoteConfig = field(default_factory=NoteConfig)  # how the admission note is cut from the discharge note
    block_size_mb: int = 4  # CSV bytes parsed per block; peak memory grows with it
    workers: int = 2  # processes that cut notes; 0: all in this process (and the ICD release too)
    progress: bool = True  # progress bars on stderr
    # Warn on the console when more than this share of the admissions is dropped (1: never).
    warn_dropped_share: float = 0.5

    def __post_init__(self) -> None:
        require(self.block_size_mb >= 1, WHERE, "block_size_mb", "must be at least 1", self.block_size_mb)
        require(self.workers >= 0, WHERE, "workers", "must not be negative", self.workers)
        require(0.0 <= self.warn_dropped_share <= 1.0, WHERE, "warn_dropped_share", "must lie in [0, 1]",
                self.warn_dropped_share)


def load_preprocess_config(name_or_path: str = "default", overrides: tuple[str, ...] | list[str] = ()) -> PreprocessConfig:
    return config_lib.load(PreprocessConfig, "preprocess", name_or_path, overrides)


def dropped_warning(counts: dict, threshold: float) -> str | None:
    """A console warning when more than `threshold` of the admissions were dropped, naming the main reasons."""
    admissions = counts["admissions"]
    dropped = admissions - counts["kept"]
    if not admissions or dropped / admissions <= threshold:
        return None
    reasons = sorted(((n, reason) for reason, n in counts["dropped"].items() if n), reverse=True)
    listed = "; ".join(f"{reason} {100 * n / admissions:.0f}%" for n, reason in reasons[:3])
    return (f"preprocess dropped {100 * dropped / admissions:.0f}% of {admissions} admissions ({listed}); "
            "report.md lists every reason")


# Settings that change where or how fast the stage runs, not what it writes.
NOT_OUTPUT_SETTINGS = ("mimic_dir", "note_dir", "out", "overwrite", "workers", "progress", "block_size_mb",
                       "warn_dropped_share")


@dataclass
class PreprocessResult:
    out: Path
    counts: dict  # the manifest's `result.counts`: funnel, drops, checks, split sizes
    already_done: bool = False  # OUT held this very run; nothing was written


def run(config: PreprocessConfig) -> PreprocessResult:
    """Run the stage into `config.out` (see deepicd.run_folder for what a rerun does)."""
    require_given(config, WHERE, {"mimic_dir": "--mimic-dir", "out": "--out"})  # no preset holds them
    out = Path(config.out)
    inputs = locate_inputs(config)
    run_folder.refuse_overlap([out], dict(inputs.items()))
    done = run_folder.previous_run(out, "preprocess", config_lib.to_dict(config), dict(inputs.items()),
                                   overwrite=config.overwrite, ignore=NOT_OUTPUT_SETTINGS)
    if done is not None:
        return PreprocessResult(out, done["result"]["counts"], already_done=True)
    started = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    with staged_directory(out, replace=config.overwrite or out.is_dir()) as folder:
        with OntologyService(background=config.workers > 0) as service:
            collected = collect(inputs, config)
            if len(collected.kept.text) == 0:
                raise UserError("no admission is left after filtering: "
                                + ", ".join(f"{reason}: {n}" for reason, n in collected.funnel))
            pa.default_memory_pool().release_unused()  # hand the CSV blocks' memory back before the writes
            ontology = service.describe(collected.kept.first_code)
        counts = write_outputs(folder, collected, inputs, config, ontology)
        entry = manifest.record(
            "preprocess", config=config_lib.to_dict(config), inputs=dict(inputs.items()), seed=config.seed,
            prompts={"task": task.VERSION},
            result={"mimic_versions": counts.pop("mimic_versions"), "counts": counts,
                    "duration_s": round(time.perf_counter() - started, 2)},
            packages=("deepicd", "pyarrow", "numpy", "simple-icd-10-cm", "hydra-core"),
        )
        manifest.write(folder, entry, outputs=manifest.describe_outputs(folder))
    return PreprocessResult(out, counts)

