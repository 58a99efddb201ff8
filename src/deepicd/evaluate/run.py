"""The `deepicd evaluate` stage: score existing completions, or generate them first, then write every output.

Outputs of an evaluation folder:
    predictions.jsonl  one scored row per note (id, gold, completion(s), prediction, levels, grade)
    metrics.json       every number (fractions in [0, 1])
    report.md          the same numbers for a reader, with the figures
    *.png              per-chapter F1, chapter confusion, frequency terciles
    manifest.json      the shared record (deepicd.manifest): config, inputs with sha256, outputs, method; last
    generations.jsonl  (--model only) the raw completions, resumable

Everything is computed before the first output is written, and each file is
written to a temporary name and renamed, so a failure leaves no half-written
file and an existing manifest always describes complete outputs.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from deepicd.errors import UserError
from deepicd import manifest as shared
from deepicd import split_tables
from deepicd.evaluate import manifest as manifests
from deepicd.evaluate import plots, report
from deepicd.evaluate.config import EvaluateConfig
from deepicd.evaluate.evaluation import Evaluation, evaluate
from deepicd.evaluate.inputs import (
    Predictions,
    find_labels,
    read_predictions,
    read_split_codes,
    read_train_codes,
)
from deepicd.evaluate.labels import LabelSpace, read_labels
from deepicd.evaluate.prompt_filter import filter_predictions
from deepicd.rewards.completion import normalize_gold
from deepicd.schema import require_given

OUTPUTS = ("predictions.jsonl", "metrics.json", "report.md", "manifest.json")


@dataclass
class EvaluateResult:
    out: Path
    metrics: dict  # what metrics.json holds
    already_done: bool = False  # OUT held this very evaluation; nothing was redone


def previous_evaluation(out: Path, config: EvaluateConfig, inputs: dict) -> EvaluateResult | None:
    """OUT's finished evaluation with these settings and inputs, which stands; None when there is work to do.

    Follows deepicd.run_folder, except that a folder without a manifest is an
    interrupted evaluation: its generations continue where they stopped.
    """
    from deepicd import run_folder
    from deepicd.evaluate.generation import GENERATIONS, SETTINGS

    run_folder.refuse_overlap([out / name for name in (*OUTPUTS, GENERATIONS, SETTINGS)], inputs)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder")
    if not (out / shared.FILE).is_file():
        return None
    done = run_folder.previous_run(out, "evaluate", asdict(config), inputs, overwrite=config.overwrite,
                                   ignore=NOT_RESULT_SETTINGS, every_input=False)
    if done is None or not (out / "metrics.json").is_file():
        return None
    return EvaluateResult(out, json.loads((out / "metrics.json").read_text(encoding="utf-8")), already_done=True)


def label_space(config: EvaluateConfig, data_dir: Path | None) -> tuple[LabelSpace | None, dict[str, Path | None]]:
    """The label space `config.labels` names, and the files it was read from (for the manifest).

    "" / "train": labels.csv of the data folder (the train codes), or None without one (the gold codes
    then form the space); "all-splits": the first codes of train, val and test, which is how the paper
    counts its 6,369 full-code classes (6,368 codes + NIL); anything else: a CSV path.
    """
    if config.labels == "all-splits":
        if data_dir is None:
            raise UserError("labels=all-splits needs --data DIR: the label space is the first codes of its train, val and test splits")
        codes, paths = read_split_codes(data_dir)
        space = LabelSpace(frozenset(codes.tolist()), f"first codes of train, val and test in {data_dir}")
        return space, {f"labels_{path.stem}": path for path in paths}
    labels_path = find_labels(config.labels, data_dir)
    return (read_labels(labels_path) if labels_path else None), {"labels": labels_path}


def _score(
    predictions: Predictions, config: EvaluateConfig, data_dir: Path | None, progress: bool, prompt_filter: dict | None = None
) -> tuple[Evaluation, dict[str, Path | None]]:
    space, label_files = label_space(config, data_dir)
    train_codes, train_path = read_train_codes(data_dir)
    evaluation = evaluate(
        predictions, config, label_space=space, train_codes=train_codes, progress=progress, prompt_filter=prompt_filter
    )
    return evaluation, {**label_files, "train": train_path}


def _announce(message: str | None) -> None:
    """A line the user must see before a long run starts (stderr, so stdout stays the result)."""
    if message:
        print(message, file=sys.stderr, flush=True)


def write_outputs(evaluation: Evaluation, out: Path, manifest: dict, *, title: str, source: str, draw: bool) -> list[Path]:
    """predictions.jsonl, metrics.json, report.md, figures, and manifest.json last."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with shared.atomic_open(out / "predictions.jsonl") as handle:
        handle.writelines(evaluation.lines())
    written.append(out / "predictions.jsonl")
    shared.write_text(out / "metrics.json", json.dumps(evaluation.metrics, indent=2) + "\n")
    written.append(out / "metrics.json")
    if draw:
        written += plots.draw_all(evaluation.metrics, out)
    shared.write_text(out / "report.md", report.render(evaluation.metrics, title=title, source=source, figures=draw))
    written.append(out / "report.md")
    written.append(shared.write(out, manifest, outputs=shared.describe_outputs(out, [p.relative_to(out).as_posix() for p in written])))
    return written


def run(config: EvaluateConfig, *, progress: bool = False) -> EvaluateResult:
    """Evaluate into `config.out`: the completions of `config.predictions`, or `generator.model`'s on a split."""
    require_given(config, "evaluate config", {"out": "--out"})
    model, predictions = config.generator.model, config.predictions
    if bool(model) == bool(predictions):
        raise UserError("give exactly one of --model PATH (generate, then score) or --predictions FILE (score)")
    data = Path(config.data) if config.data else None
    if predictions:
        return _evaluate_predictions(Path(predictions), Path(config.out), config, data_dir=data, progress=progress)
    if data is None:
        raise UserError("--model needs --data DIR, the preprocess folder whose split is evaluated")
    return _evaluate_model(model, data, Path(config.out), config, progress=progress)


# Settings that name where the inputs and outputs are (the inputs are compared by content instead), or what
# to do with an earlier evaluation: a rerun with other values of these is the same evaluation.
NOT_RESULT_SETTINGS = ("out", "predictions", "data", "overwrite")


def _evaluate_predictions(
    predictions_file: Path,
    out: Path,
    config: EvaluateConfig,
    *,
    data_dir: Path | None = None,
    progress: bool = False,
) -> EvaluateResult:
    """Score a JSONL of completions (`gold`, `completion` or `completions`, optional `id`) into `out`."""
    if data_dir is not None and not data_dir.is_dir():
        raise UserError(f"data folder not found: {data_dir}")
    done = previous_evaluation(out, config, {"predictions": predictions_file, "data": data_dir})
    if done is not None:
        return done
    predictions = read_predictions(predictions_file, limit=config.limit, progress=progress)
    predictions, dropped = filter_predictions(predictions, config, str(predictions_file))
    _announce(dropped.message())
    evaluation, inputs = _score(predictions, config, data_dir, progress, dropped.as_dict())
    manifest = manifests.build(
        asdict(config),
        {"predictions": predictions_file, "data": data_dir, **inputs},
        method=config.stage,
        seed=None,
        prompts={"target": manifests.target_of(config, None)},
        result={"mode": "predictions"},
    )
    write_outputs(
        evaluation,
        out,
        manifest,
        title=f"Evaluation of {predictions_file.name}",
        source=f"Completions read from `{predictions_file.name}`.",
        draw=config.plots,
    )
    return EvaluateResult(out, evaluation.metrics)


def _evaluate_model(
    model: str,
    data_dir: Path,
    out: Path,
    config: EvaluateConfig,
    *,
    progress: bool = False,
) -> EvaluateResult:
    """Generate completions for a split of a preprocess folder with `model`, then score them into `out`."""
    from deepicd.evaluate import prompting
    from deepicd.evaluate.generation import cpu_cost_note, generate
    from deepicd.evaluate.prompt_filter import filter_notes

    split_file = split_tables.notes_path(data_dir, config.split)
    done = previous_evaluation(out, config, {"split": split_file, "data": data_dir, "model": model})
    if done is not None:
        return done
    notes = split_tables.read_notes(data_dir, config.split, columns=(), limit=config.limit)
    notes, dropped = filter_notes(notes, config)
    _announce(dropped.message())
    _announce(cpu_cost_note(config, len(notes)))
    completions = generate(notes, config, out, overwrite=config.overwrite)
    keys = notes["hadm_id"].astype(str).tolist()
    gold = np.asarray([normalize_gold(code) for code in notes["first_code"]], dtype=object)
    predictions = Predictions(keys, gold, [completions[key] for key in keys])
    evaluation, inputs = _score(predictions, config, data_dir, progress, dropped.as_dict())
    manifest = manifests.build(
        asdict(config),
        {"split": split_file, "data": data_dir, **inputs, "model": model},
        method=config.stage or manifests.model_stage(model),
        seed=config.sampling.seed,
        prompts={"evaluation": prompting.version(config), "target": manifests.target_of(config, model)},
        result={"mode": "model", "model": model, "generations": "generations.jsonl"},
    )
    name = Path(model).name or model
    write_outputs(
        evaluation,
        out,
        manifest,
        title=f"Evaluation of {name} on {config.split}",
        source=f"Model `{name}`, backend {config.generator.backend}, split `{config.split}` of `{data_dir.name}`.",
        draw=config.plots,
    )
    return EvaluateResult(out, evaluation.metrics)
