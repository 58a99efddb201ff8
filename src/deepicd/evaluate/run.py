"""The `deepicd evaluate` stage: score existing completions, or generate them first, then write every output.

Outputs of an evaluation folder:
    predictions.jsonl  one scored row per note (id, gold, completion(s), prediction, levels, grade)
    metrics.json       every number (fractions in [0, 1])
    report.md          the same numbers for a reader, with the figures
    *.png              per-chapter F1, chapter confusion, frequency terciles
    manifest.json      config, inputs with sha256, versions, model, stage; written last
    generations.jsonl  (--model only) the raw completions, resumable

Everything is computed before the first output is written, and each file is
written to a temporary name and renamed, so a failure leaves no half-written
file and an existing manifest always describes complete outputs.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from deepicd.commands import UserError
from deepicd import manifest as shared
from deepicd.evaluate import manifest as manifests
from deepicd.evaluate import plots, report
from deepicd.evaluate.config import EvaluateConfig
from deepicd.evaluate.evaluation import Evaluation, evaluate
from deepicd.evaluate.inputs import Predictions, find_labels, read_predictions, read_split, read_train_codes, split_path
from deepicd.evaluate.labels import read_labels
from deepicd.rewards.completion import normalize_gold

OUTPUTS = ("predictions.jsonl", "metrics.json", "report.md", "manifest.json")


def check_out(out: Path, force: bool) -> None:
    """Refuse to overwrite a finished evaluation unless asked to."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder")
    if (out / "metrics.json").exists() and not force:
        raise UserError(f"{out} already holds an evaluation (metrics.json); pass --force to replace it")


def _score(
    predictions: Predictions, config: EvaluateConfig, data_dir: Path | None, progress: bool
) -> tuple[Evaluation, dict[str, Path | None]]:
    labels_path = find_labels(config.labels, data_dir)
    space = read_labels(labels_path) if labels_path else None
    train_codes, train_path = read_train_codes(data_dir)
    evaluation = evaluate(predictions, config, label_space=space, train_codes=train_codes, progress=progress)
    return evaluation, {"labels": labels_path, "train": train_path}


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
    shared.write_text(out / "manifest.json", json.dumps(manifest, indent=2, default=str) + "\n")
    written.append(out / "manifest.json")
    return written


def evaluate_predictions(
    predictions_file: Path,
    out: Path,
    config: EvaluateConfig,
    *,
    data_dir: Path | None = None,
    force: bool = False,
    progress: bool = False,
) -> Evaluation:
    """Score a JSONL of completions (`gold`, `completion` or `completions`, optional `id`) into `out`."""
    check_out(out, force)
    if data_dir is not None and not data_dir.is_dir():
        raise UserError(f"data folder not found: {data_dir}")
    predictions = read_predictions(predictions_file, limit=config.limit, progress=progress)
    evaluation, inputs = _score(predictions, config, data_dir, progress)
    manifest = manifests.build(
        asdict(config),
        {"predictions": predictions_file, "data": data_dir, **inputs},
        model=None,
        stage=config.stage,
        extra={"mode": "predictions"},
    )
    write_outputs(
        evaluation,
        out,
        manifest,
        title=f"Evaluation of {predictions_file.name}",
        source=f"Completions read from `{predictions_file.name}`.",
        draw=config.plots,
    )
    return evaluation


def evaluate_model(
    model: str,
    data_dir: Path,
    out: Path,
    config: EvaluateConfig,
    *,
    force: bool = False,
    progress: bool = False,
) -> Evaluation:
    """Generate completions for a split of a preprocess folder with `model`, then score them into `out`."""
    from deepicd.evaluate.generation import generate
    from deepicd.prompts import task

    check_out(out, force)
    notes = read_split(data_dir, config.split, limit=config.limit)
    config.generator.model = model
    completions = generate(notes, config, out, force=force)
    keys = notes["hadm_id"].astype(str).tolist()
    gold = np.asarray([normalize_gold(code) for code in notes["first_code"]], dtype=object)
    predictions = Predictions(keys, gold, [completions[key] for key in keys])
    evaluation, inputs = _score(predictions, config, data_dir, progress)
    stage = config.stage or manifests.model_stage(model)
    manifest = manifests.build(
        asdict(config),
        {"split": split_path(data_dir, config.split), "data": data_dir, **inputs, "model": model},
        model=model,
        stage=stage,
        extra={"mode": "model", "prompt_version": task.VERSION, "generations": "generations.jsonl"},
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
    return evaluation
