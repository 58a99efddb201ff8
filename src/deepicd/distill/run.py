"""Distillation: a teacher that is shown the gold code writes reasoning traces; the good ones become SFT data.

The stage has two halves that share nothing but `traces.jsonl`:

1. *Generate.* Every admission of the split without a stored trace gets the oracle
   prompt (note, gold code, its tabular text, its chapter's guidelines) and the
   teacher's completions are appended the moment they arrive. A rerun after a
   crash picks up where the file ends; backend failures are counted, not stored,
   so the next run retries them.
2. *Build.* All stored traces are filtered (see `filters`) and the kept ones are
   rewritten as prompt-completion pairs on the *task* prompt, which is what the
   student sees at inference time. The teacher's oracle prompt never reaches the
   SFT data. Validation samples are held out by patient, and the stats match the
   paper's Table 2.

Generation order does not matter: the outputs are built in input order from the
file, so the SFT set is the same whatever crashed or ran in parallel before.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import pandas as pd
from tqdm import tqdm

from deepicd import icd
from deepicd.errors import ConfigError, UserError
from deepicd.distill import filters as trace_filters
from deepicd import manifest, run_folder, split_tables
from deepicd.distill.filters import FilterConfig
from deepicd.distill.stats import DistillStats, report_markdown
from deepicd.distill.store import StoreError, TraceStore, read_rows
from deepicd.generate.base import GenerationRequest, GenerationResult, Generator, SamplingConfig
from deepicd.generate.config import GeneratorConfig, require_model
from deepicd.prompts import oracle, task
from deepicd.schema import require, require_given

TRACES = "traces.jsonl"
RUN_FILE = "run.json"  # what the traces in this folder were made with; a rerun must match it
IDENTITY_KEYS = ("split", "oracle_prompt", "teacher")
# What a run makes from its traces; `overwrite` empties the traces (under their lock) and removes these.
DERIVED_ENTRIES = (RUN_FILE, "sft", "stats.json", "report.md", "manifest.json")


@dataclass
class DistillConfig:
    """One distillation preset; shipped ones live in `configs/distill/*.yaml`."""

    name: str = "paper"  # the preset's name, recorded in the manifest
    data: str = ""  # preprocess output folder holding SPLIT.parquet (--data)
    split: str = "train"  # which split to distil
    out: str = ""  # output folder: traces.jsonl, sft/, stats.json, report.md, manifest.json (--out)
    overwrite: bool = False  # start over: remove OUT's traces and the sets built from them first (--overwrite)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)  # the teacher and the backend that runs it
    sampling: SamplingConfig = field(default_factory=SamplingConfig)  # how the teacher samples
    filters: FilterConfig = field(default_factory=FilterConfig)  # which traces are kept
    guidelines_dir: str = ""  # folder of chapter_<n>.json files; empty: the tabular list's chapter notes
    guidelines_max_chars: int = 4000  # cap on the guideline excerpt in the oracle prompt (0: no cap)
    # Share of patients held out as SFT validation samples. 0 (the paper preset): the published SFT trained on
    # every distilled train note and evaluated on none; holding patients out would train on fewer notes.
    val_fraction: float = 0.0
    split_seed: int = 42  # seeds the patient-level train/val assignment
    sync_every: int = 32  # rows appended between two fsyncs of traces.jsonl
    chunk_size: int = 2048  # prompts handed to the backend at a time: bounds the memory the prompts take
    limit: int = 0  # generate at most this many new admissions in one run (0: all that are missing)

    def __post_init__(self) -> None:
        where = "distill config"
        require(0.0 <= self.val_fraction < 1.0, where, "val_fraction", "must be in [0, 1)", self.val_fraction)
        for key in ("sync_every", "chunk_size"):
            require(getattr(self, key) >= 1, where, key, "must be at least 1", getattr(self, key))
        require(self.limit >= 0, where, "limit", "must not be negative", self.limit)
        if self.guidelines_dir and not Path(self.guidelines_dir).is_dir():
            raise ConfigError(f"invalid distill config at key 'guidelines_dir': folder not found: {self.guidelines_dir}")


def load_distill_config(name_or_path: str, overrides: list[str] | tuple[str, ...] = ()) -> DistillConfig:
    """A distillation preset by name (`paper`, `tiny-cpu`, ...) or YAML path, checked when built."""
    from deepicd.config import load

    return load(DistillConfig, "distill", name_or_path, overrides)


@dataclass
class DistillResult:
    out: Path
    stats: dict
    generated_now: int
    errors_now: int
    seconds: float
    first_error: str = ""  # what the teacher said about the first admission that failed in this run


# -- generation ------------------------------------------------------------------
def oracle_request(row, config: DistillConfig) -> GenerationRequest:
    from deepicd import guidelines

    gold = icd.normalize(row.first_code)
    try:
        excerpt = guidelines.code_excerpt(gold, config.guidelines_dir or None, config.guidelines_max_chars)
    except guidelines.GuidelineError as exc:
        raise UserError(str(exc)) from exc
    return GenerationRequest(key=str(row.hadm_id), messages=oracle.messages(row.text, gold, excerpt), prefill=oracle.PREFILL)


def _pending(frame: pd.DataFrame, store: TraceStore, limit: int) -> list:
    rows = [row for row in frame.itertuples(index=False) if str(row.hadm_id) not in store]
    return rows[:limit] if limit else rows


def _check_identity(out: Path, identity: dict) -> None:
    """Refuse to add to traces made another way; `_record_identity` writes the file once a teacher is running."""
    path = out / RUN_FILE
    if path.is_file():
        try:
            previous = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise UserError(f"{path} is not valid JSON: {exc}") from exc
        for key in IDENTITY_KEYS:
            if previous.get(key) != identity[key]:
                raise UserError(
                    f"{out} holds traces made with {key}={previous.get(key)!r}, this run has {identity[key]!r}; "
                    f"pass --overwrite to start over there, or give another --out (or delete {path} to mix them "
                    "on purpose)"
                )


def _record_identity(out: Path, identity: dict) -> None:
    """Write run.json if absent. Only after the teacher was built: a typo in --teacher must not pin OUT to it."""
    path = out / RUN_FILE
    if not path.is_file():
        manifest.write_json(path, {**identity, "created": manifest.now()})


class _Prebuilt:
    """A `make_generator` that hands out a teacher built in advance; `close_unused` closes it if never asked."""

    def __init__(self, teacher: Generator):
        self.teacher, self.used = teacher, False

    def __call__(self, _config: GeneratorConfig) -> Generator:
        self.used = True
        return self.teacher

    def close_unused(self) -> None:
        if not self.used:
            self.teacher.close()


def generate_missing(
    frame: pd.DataFrame,
    out: Path,
    config: DistillConfig,
    make_generator: Callable[[GeneratorConfig], Generator],
    identity: dict,
    start_over: bool = False,
) -> tuple[int, int, str]:
    """Append teacher outputs for every admission of `frame` not yet in traces.jsonl.

    `start_over` empties the traces and removes what was made from them first,
    once the store's lock is held (another run writing there is refused before
    anything is removed). Returns (written, errors, the first error's message).
    """
    written = errors = 0
    first_error = ""
    with TraceStore(out / TRACES) as store:
        if start_over:
            store.discard()
            run_folder.clear(out, DERIVED_ENTRIES)
        if store.repaired_bytes:
            tqdm.write(f"removed a torn last line ({store.repaired_bytes} bytes) from {store.path}", file=sys.stderr)
        gold_of = dict(zip(frame["hadm_id"].astype(str), frame["first_code"].map(icd.normalize)))
        subject_of = dict(zip(frame["hadm_id"].astype(str), frame["subject_id"])) if "subject_id" in frame else {}
        pending = _pending(frame, store, config.limit)
        done_before = sum(1 for key in gold_of if key in store)
        if not pending:
            _record_identity(out, identity)
            return 0, 0, ""
        generator = make_generator(dataclasses.replace(config.generator, progress=False))
        _record_identity(out, identity)
        bar = tqdm(total=done_before + len(pending), initial=done_before, desc="distill", unit="note", dynamic_ncols=True)
        try:
            for result in _generate_in_chunks(generator, pending, config):
                if result.error is not None or not result.completions:
                    errors += 1
                    first_error = first_error or (result.error or "the teacher returned no completion")
                    bar.set_postfix(errors=errors, refresh=False)
                    continue
                row = {
                    "hadm_id": result.key,
                    "subject_id": _plain(subject_of.get(result.key)),
                    "gold": gold_of.get(result.key),
                    "completions": list(result.completions),
                    "prompt_tokens": result.prompt_tokens,
                    "completion_tokens": list(result.completion_tokens),
                    "oracle_prompt": oracle.VERSION,
                    "teacher": config.generator.model,
                    "created": time.time(),
                }
                if store.append(row):
                    written += 1
                    bar.update(1)
                    if written % config.sync_every == 0:
                        store.sync()
        finally:
            store.sync()
            bar.close()
            generator.close()
    return written, errors, first_error


def _generate_in_chunks(generator: Generator, pending: list, config: DistillConfig) -> Iterator[GenerationResult]:
    """Results for `pending`, the prompts built and handed over `chunk_size` at a time.

    Oracle prompts carry the note, tabular text and guidelines (about 10 kB each);
    building all of a 65k-note split at once would hold most of a gigabyte.
    """
    for start in range(0, len(pending), config.chunk_size):
        requests = [oracle_request(row, config) for row in pending[start : start + config.chunk_size]]
        yield from generator.generate(requests, config.sampling)


def _plain(value):
    """A numpy scalar as the plain Python value JSON can hold."""
    return value.item() if hasattr(value, "item") else value


# -- building the SFT set ------------------------------------------------------------
def _val_subjects(subjects: list[str], fraction: float, seed: int) -> set[str]:
    """Patients held out: those whose seeded hash falls below `fraction`, at least one if any are asked for."""
    if fraction <= 0 or len(subjects) < 2:
        return set()
    scored = {s: int(hashlib.sha256(f"{seed}:{s}".encode()).hexdigest()[:12], 16) / 16**12 for s in subjects}
    chosen = {s for s, value in scored.items() if value < fraction}
    if not chosen:
        chosen = {min(scored, key=scored.get)}
    if len(chosen) == len(subjects):
        chosen.discard(max(chosen, key=scored.get))
    return chosen


def build_sft(frame: pd.DataFrame, traces: Path, config: DistillConfig) -> tuple[pd.DataFrame, pd.DataFrame, DistillStats]:
    """Filter the stored traces of `frame`'s admissions into SFT train/val tables (input order) and stats."""
    stats = DistillStats(admissions=len(frame))
    stored = {row["hadm_id"]: row for row in read_rows(traces)}
    samples = []
    for row in frame.itertuples(index=False):
        key = str(row.hadm_id)
        entry = stored.get(key)
        if entry is None:
            continue
        gold = icd.normalize(row.first_code)
        verdicts = [trace_filters.check(c, gold, config.filters, oracle.PREFILL) for c in entry["completions"]]
        chosen = stats.add(gold, verdicts)
        if chosen is None:
            continue
        completion = trace_filters.sft_completion(chosen.trace, gold, task.PREFILL)
        samples.append(
            {
                "prompt": task.messages(row.text),
                "completion": [{"role": "assistant", "content": completion}],
                "hadm_id": key,
                "subject_id": str(getattr(row, "subject_id", key)),
                "code": gold,
                "trace_words": chosen.words,
            }
        )
    columns = ["prompt", "completion", "hadm_id", "subject_id", "code", "trace_words"]
    table = pd.DataFrame(samples, columns=columns)
    held_out = _val_subjects(sorted(set(table["subject_id"])), config.val_fraction, config.split_seed)
    is_val = table["subject_id"].isin(held_out)
    train, val = table[~is_val].reset_index(drop=True), table[is_val].reset_index(drop=True)
    stats.sft_train, stats.sft_val = len(train), len(val)
    return train, val, stats


def _write_parquet(table: pd.DataFrame, path: Path) -> None:
    with manifest.atomic_open(path, "wb") as handle:
        table.to_parquet(handle, index=False)


def _write_val(table: pd.DataFrame, path: Path) -> None:
    """Write the validation samples, or make sure no val.parquet is left when there are none.

    `deepicd sft` evaluates on val.parquet whenever the file exists. One left by an
    earlier build with a larger `val_fraction` would hold patients that are now in
    train.parquet, so with no validation samples the file is removed, not kept.
    """
    if len(table):
        _write_parquet(table, path)
    else:
        path.unlink(missing_ok=True)


# -- the stage ---------------------------------------------------------------------
def default_generator(config: GeneratorConfig) -> Generator:
    from deepicd.generate import build_generator

    return build_generator(config)


def run(
    config: DistillConfig,
    *,
    make_generator: Callable[[GeneratorConfig], Generator] = default_generator,
) -> DistillResult:
    """Generate what is missing, then (re)build sft/{train,val}.parquet, stats.json, report.md, manifest.json.

    Traces made with another split, oracle prompt or teacher are refused unless
    `overwrite`, which starts over. sft/val.parquet exists only when patients
    were held out (`val_fraction` > 0).
    """
    started = time.perf_counter()
    require_given(config, "distill config", {"data": "--data", "out": "--out"})
    require_model(config.generator)  # the teacher, given on the command line
    out, split = Path(config.out), config.split
    data_file = Path(config.data) / f"{split}.parquet"
    run_folder.refuse_overlap([out / name for name in (TRACES, *DERIVED_ENTRIES)],
                              {split: data_file, "teacher": config.generator.model})
    frame = split_tables.read_notes(config.data, split)
    if config.overwrite:
        # The teacher is built before anything is removed: one that cannot start must not cost the old traces.
        make_generator = _Prebuilt(make_generator(dataclasses.replace(config.generator, progress=False)))
    out.mkdir(parents=True, exist_ok=True)
    identity = {"split": split, "oracle_prompt": oracle.VERSION, "teacher": config.generator.model}
    if not config.overwrite:
        _check_identity(out, identity)
    try:
        written, errors, first_error = generate_missing(frame, out, config, make_generator, identity,
                                                        start_over=config.overwrite)
        train, val, stats = build_sft(frame, out / TRACES, config)
    except StoreError as exc:
        raise UserError(str(exc)) from exc
    finally:
        if isinstance(make_generator, _Prebuilt):
            make_generator.close_unused()
    stats.backend_errors = errors
    summary = stats.as_dict()

    _write_parquet(train, out / "sft" / "train.parquet")
    _write_val(val, out / "sft" / "val.parquet")
    manifest.write_json(out / "stats.json", summary)
    manifest.write_text(
        out / "report.md",
        report_markdown(summary, split=split, teacher=config.generator.model, prompt_version=oracle.VERSION),
    )
    entry = manifest.record(
        "distill", config=dataclasses.asdict(config), seed=config.sampling.seed,
        inputs={split: data_file, "teacher": config.generator.model},
        prompts={"oracle": oracle.VERSION, "task": task.VERSION},
        result={"split": split, **{k: summary[k] for k in ("table2", "admissions", "generated", "kept", "backend_errors")}},
    )
    manifest.write(out, entry, outputs=manifest.describe_outputs(out, ["sft/train.parquet", "sft/val.parquet", TRACES]))
    return DistillResult(out, summary, written, errors, time.perf_counter() - started, first_error)

