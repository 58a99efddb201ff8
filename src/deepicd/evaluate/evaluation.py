"""From completions and gold codes to every number of the evaluation, in memory, with no I/O.

Completions are parsed exactly as the reward parses them (`parse_completion`:
the prefill put back, the first pair's diagnosis, whitespace and dots removed,
case kept) or, for the code-only prompt, by `prompts.code_only.parse`; then
projected onto the label space of each level, then scored.
Keeping this step free of files makes it the one thing the tests, the
benchmark and both CLI modes share.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from deepicd.evaluate import bootstrap, metrics
from deepicd.evaluate.config import EvaluateConfig
from deepicd.evaluate.inputs import Predictions
from deepicd.evaluate.labels import (
    LEVELS,
    NIL,
    LabelSpace,
    Projected,
    chapter_order,
    chapter_titles,
    factorize_gold,
    factorize_predictions,
)
from deepicd.rewards.completion import parse_completion


@dataclass
class Evaluation:
    """Everything `deepicd evaluate` writes: the metrics and one scored row per note."""

    metrics: dict
    predictions: Predictions
    parsed: list[list[str | None]]  # parsed code of every sample (None: no pair)
    selected: np.ndarray  # index of the scored sample of each note
    levels: dict[str, metrics.LevelResult]  # gold and scored prediction per level, as class indices
    valid: np.ndarray

    def labels(self, level: str) -> tuple[np.ndarray, np.ndarray]:
        """(gold, prediction) label strings of every note at `level`."""
        enc = self.levels[level].encoded
        return enc.classes[enc.gold], enc.classes[enc.pred]

    def rows(self):
        """The rows of predictions.jsonl as dicts, in input order (the reference form of `lines`)."""
        pairs = {level: self.labels(level) for level in LEVELS}
        grades = _grades(pairs)
        single = self.predictions.k == 1
        for i, identifier in enumerate(self.predictions.ids):
            chosen = int(self.selected[i])
            row = {"id": identifier, "gold": pairs["full_code"][0][i]}
            if single:
                row["completion"] = self.predictions.completions[i][0]
            else:
                row["completions"] = self.predictions.completions[i]
                row["predictions"] = self.parsed[i]
                row["selected"] = chosen
            row["prediction"] = self.parsed[i][chosen]
            row["valid"] = bool(self.valid[i])
            row["levels"] = {level: {"gold": pairs[level][0][i], "prediction": pairs[level][1][i]} for level in LEVELS}
            row["grade"] = grades[i]
            yield row

    def lines(self):
        """predictions.jsonl as text, one line per note: `rows()` serialised, several times faster.

        The gold, levels and grade of a note depend only on its labels at the three
        levels, so their JSON is built once per distinct combination (a few thousand
        for a million notes) and only the per-note fields are encoded per row.
        """
        pairs = {level: self.labels(level) for level in LEVELS}
        grades = _grades(pairs)
        key, first = bootstrap.joint_cells({level: self.levels[level].encoded for level in LEVELS})
        tails = []
        for i in first.tolist():
            tail = {
                "gold": pairs["full_code"][0][i],
                "levels": {level: {"gold": pairs[level][0][i], "prediction": pairs[level][1][i]} for level in LEVELS},
                "grade": grades[i],
            }
            tails.append(json.dumps(tail, ensure_ascii=False)[1:])  # without "{": it continues a row
        single = self.predictions.k == 1
        encode = json.JSONEncoder(ensure_ascii=False).encode
        text = json.encoder.encode_basestring  # what `encode` does for a str, minus the dispatch
        cells, selected, valid = key.tolist(), self.selected.tolist(), self.valid.tolist()
        for i, identifier in enumerate(self.predictions.ids):
            chosen = selected[i]
            texts = self.predictions.completions[i]
            if single:
                head = '{"id": ' + text(identifier) + ', "completion": ' + text(texts[0])
            else:
                head = '{"id": ' + text(identifier) + ', "completions": ' + encode(texts)
                head += ', "predictions": ' + encode(self.parsed[i]) + f', "selected": {chosen}'
            prediction = self.parsed[i][chosen]
            head += ', "prediction": ' + ("null" if prediction is None else text(prediction))
            head += ', "valid": ' + ("true, " if valid[i] else "false, ")
            yield head + tails[cells[i]] + "\n"


def _grades(pairs: dict[str, tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    grades = np.full(len(pairs["full_code"][0]), "unrelated", dtype=object)
    for level, grade in (("chapter", "same_chapter"), ("category", "same_category"), ("full_code", "exact")):
        gold, pred = pairs[level]
        grades[gold == pred] = grade
    return grades


def parse_all(
    completions: Sequence[Sequence[str]],
    prefill: str,
    *,
    progress: bool = False,
    reader: Callable[[str], str | None] | None = None,
) -> list[list[str | None]]:
    """The parsed code of every completion (None when there is none): as the reward reads it, or with `reader`."""
    rows = completions
    if progress:
        from tqdm import tqdm

        rows = tqdm(completions, desc="parsing", unit=" notes", leave=False, mininterval=1.0)
    if reader is not None:
        return [[reader(text) for text in texts] for texts in rows]
    return [[parse_completion(text, prefill).prediction for text in texts] for texts in rows]


# Labels that are no class of a level's macro average. The published chapter vocabulary is the chapters
# themselves: an answer without a chapter is a miss of the gold chapter, not a 22nd class with F1 0.
UNSCORED = {"chapter": (NIL,), "category": (), "full_code": ()}


def _encode(gold: Projected, pred: Projected, level: str, rows: np.ndarray) -> metrics.Encoded:
    """Gold and the predictions at `rows` (indices into the flattened samples) over one shared vocabulary."""
    vocabulary = pd.Index(pd.unique(pd.Series(gold.names[level] + pred.names[level], dtype=object)))
    gold_ids = vocabulary.get_indexer(gold.names[level]).astype(np.int64)[gold.codes]
    pred_ids = vocabulary.get_indexer(pred.names[level]).astype(np.int64)[pred.codes[rows]]
    classes = vocabulary.to_numpy(dtype=object)
    return metrics.Encoded(classes, gold_ids, pred_ids, metrics.unscored_mask(classes, UNSCORED[level]))


def _sample_ids(pred: Projected, level: str, n: int, k: int) -> np.ndarray:
    """(n, k) class indices of every sample at `level`; equal indices mean equal labels."""
    _, table = np.unique(np.asarray(pred.names[level], dtype=object).astype(str), return_inverse=True)
    return table.astype(np.int64)[pred.codes].reshape(n, k)


def _frequencies(projected: Projected) -> dict[str, dict[str, int]]:
    """How often each label of each level occurs among the projected rows."""
    out = {}
    for level in LEVELS:
        counts = np.bincount(projected.codes, minlength=len(projected.names[level]))
        tally: dict[str, int] = {}
        for name, count in zip(projected.names[level], counts.tolist()):
            if count:
                tally[name] = tally.get(name, 0) + count
        out[level] = tally
    return out


def _frequencies_of_counts(counts: dict[str, int]) -> dict[str, dict[str, int]]:
    """Per-level frequencies from per-code counts (a labels file's train_count)."""
    out: dict[str, dict[str, int]] = {level: {} for level in LEVELS}
    names = factorize_gold(list(counts)).names
    for index, count in enumerate(counts.values()):
        for level in LEVELS:
            name = names[level][index]
            out[level][name] = out[level].get(name, 0) + count
    return out


def _confusion(result: metrics.LevelResult, order: dict[str, int]) -> dict[str, list]:
    """Chapter confusion counts: gold chapters as rows, predicted chapters (NIL last) as columns."""
    enc = result.encoded
    size = enc.size
    matrix = np.bincount(enc.gold * size + enc.pred, minlength=size * size).reshape(size, size)
    names = [str(c) for c in enc.classes]
    ranked = sorted(range(size), key=lambda i: (names[i] == NIL, order.get(names[i], 1000), names[i]))
    rows = [i for i in ranked if matrix[i].sum() > 0]
    cols = [i for i in ranked if matrix[i].sum() > 0 or matrix[:, i].sum() > 0]
    return {
        "gold": [names[i] for i in rows],
        "predicted": [names[i] for i in cols],
        "counts": matrix[np.ix_(rows, cols)].astype(int).tolist(),
    }


def evaluate(
    predictions: Predictions,
    config: EvaluateConfig,
    *,
    label_space: LabelSpace | None = None,
    train_codes: np.ndarray | None = None,
    parsed: list[list[str | None]] | None = None,
    progress: bool = False,
    prompt_filter: dict | None = None,
) -> Evaluation:
    """Parse, project and score. `label_space` None: the gold codes present form the label space.

    `prompt_filter` (what `prompt_filter` dropped before these rows) is recorded in the metrics.
    """
    from deepicd.evaluate import prompting

    n, k = len(predictions), predictions.k
    if parsed is None:
        parsed = parse_all(predictions.completions, config.prefill, progress=progress, reader=prompting.reader(config))
    paper_pattern = config.code_pattern == "paper"
    gold = factorize_gold(predictions.gold)
    gold_codes = gold.names["full_code"][:-1]
    if label_space is None:
        label_space = LabelSpace(frozenset(gold_codes), "gold codes of the evaluated rows")
    label_space, gold_outside = label_space.extended(gold_codes)

    flat = [code for codes in parsed for code in codes]
    pred = factorize_predictions(
        flat, label_space, paper_pattern=paper_pattern, nil_scope=config.nil_scope, leading=config.leading_code
    )
    raw = None
    if k > 1:
        # Agreement between samples is about the model, not the label space: two different codes
        # outside it disagree even though both score as NIL.
        raw_projected = factorize_predictions(flat, None, paper_pattern=paper_pattern, leading=config.leading_code)
        raw = {level: _sample_ids(raw_projected, level, n, k) for level in LEVELS}
    if raw is not None and config.selection == "majority":
        selected, _ = metrics.vote(raw["full_code"])
    else:
        selected = np.zeros(n, dtype=np.int64)
    rows = np.arange(n, dtype=np.int64) * k + selected

    results = {level: metrics.score_encoded(_encode(gold, pred, level, rows)) for level in LEVELS}
    valid = pred.valid[pred.codes[rows]]
    out: dict[str, object] = {"n": int(n), "k": int(k), "selection": config.selection}
    for level in LEVELS:
        out[level] = results[level].scores()
    out["format_rate"] = float(valid.mean())
    # Answers that are no code but start with one ("I21.4 - NSTEMI"), read through that code (leading_code).
    leading = pred.leading[pred.codes[rows]] if pred.leading is not None else np.zeros(n, dtype=bool)
    out["leading_code_rate"] = float(leading.mean()) if n else 0.0
    out["prompt_filter"] = prompt_filter or {"max_prompt_tokens": 0, "notes": int(n), "dropped": 0, "kept": int(n)}
    out["nil_rate"] = {}
    for level in LEVELS:
        enc = results[level].encoded
        nil = np.flatnonzero(enc.classes == NIL)
        out["nil_rate"][level] = float((enc.pred == nil[0]).mean()) if len(nil) else 0.0

    if train_codes is not None and len(train_codes):
        frequency, source = _frequencies(factorize_gold(np.asarray(train_codes, dtype=object))), "train"
    elif label_space.train_counts:
        frequency, source = _frequencies_of_counts(label_space.train_counts), "train (labels file counts)"
    else:
        frequency, source = _frequencies(gold), "gold"
    out["baselines"] = metrics.majority_baselines({level: results[level].encoded for level in LEVELS}, frequency, source)

    out["intervals"] = {
        "confidence": config.bootstrap.confidence,
        "samples": config.bootstrap.samples,
        "seed": config.bootstrap.seed,
        **bootstrap.intervals(
            {level: results[level].encoded for level in LEVELS},
            samples=config.bootstrap.samples,
            confidence=config.bootstrap.confidence,
            seed=config.bootstrap.seed,
            progress=progress,
        ),
    }
    order = chapter_order()
    out["per_chapter"] = metrics.per_chapter(results["chapter"], chapter_titles(), order)
    out["terciles"] = {level: metrics.terciles(results[level], frequency[level], source) for level in LEVELS}
    # Figure 4 of the paper: classes grouped into thirds of the evaluated notes, most frequent first.
    out["terciles_by_mass"] = {level: metrics.mass_terciles(results[level], None, "gold") for level in LEVELS}
    out["graded"] = metrics.graded(
        {level: results[level].encoded.gold for level in LEVELS}, {level: results[level].encoded.pred for level in LEVELS}
    )
    if raw is not None:
        out["self_consistency"] = metrics.self_consistency(raw)
    out["label_space"] = {
        "source": label_space.source,
        "size": {level: len(label_space.level(level)) for level in LEVELS},
        "gold_outside": len(gold_outside),
        "gold_outside_examples": gold_outside[:20],
        "nil_scope": config.nil_scope,
        "leading_code": config.leading_code,
        "code_pattern": config.code_pattern,
        "chapter_nil_class": False,
    }
    out["prompt"] = config.prompt
    out["chapter_confusion"] = _confusion(results["chapter"], order)
    return Evaluation(out, predictions, parsed, selected, results, valid)
