"""Hierarchical classification metrics of one prediction per note, from confusion counts.

Every score here comes from three count vectors per level: true positives,
gold support and predicted count of each class, obtained with `np.bincount`
over factorised labels. That keeps a million rows to a fraction of a second,
and the bootstrap reuses exactly the same formulas on resampled counts, so the
point estimate and its interval cannot drift apart. The test suite checks the
definitions against scikit-learn, torchmetrics and a per-class loop.

Definitions (the published ones, see REFERENCE §6):
* a class takes part in the macro average when it occurs in gold or in the
  predictions (torchmetrics drops classes with tp + fp + fn = 0); precision,
  recall or F1 with a zero denominator is 0; a predicted NIL is a class whose
  F1 is therefore 0;
* micro F1 over single-label predictions equals accuracy;
* the majority baseline predicts the most frequent train label of each level.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pandas as pd

from deepicd.evaluate.labels import LEVELS, NIL, UNKNOWN_CHAPTER

SCORES = ("macro_precision", "macro_recall", "macro_f1", "micro_f1")
GRADES = ("exact", "same_category", "same_chapter", "unrelated")
TERCILES = ("head", "medium", "tail")


def safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Elementwise division that yields 0 where the denominator is 0 (zero_division=0)."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    out = np.zeros(np.broadcast(numerator, denominator).shape, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def prf(tp: np.ndarray, support: np.ndarray, predicted: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class precision, recall and F1 from counts (any leading batch dimensions)."""
    precision = safe_divide(tp, predicted)
    recall = safe_divide(tp, support)
    # 2tp / (2tp + fp + fn) = 2tp / (support + predicted): equal to 2PR/(P+R), and defined when P+R = 0.
    f1 = safe_divide(2 * tp, support + predicted)
    return precision, recall, f1


@dataclass
class Encoded:
    """Gold and predictions of one level as indices into `classes`."""

    classes: np.ndarray  # object array of class names; every class occurs in gold or prediction
    gold: np.ndarray  # int64 indices, one per note
    pred: np.ndarray

    @property
    def size(self) -> int:
        return len(self.classes)


def encode(gold: np.ndarray, pred: np.ndarray) -> Encoded:
    """Factorise gold and predicted labels together, so one index means one class in both."""
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold labels but {len(pred)} predictions")
    codes, classes = pd.factorize(np.concatenate([np.asarray(gold, dtype=object), np.asarray(pred, dtype=object)]))
    n = len(gold)
    return Encoded(np.asarray(classes, dtype=object), codes[:n].astype(np.int64), codes[n:].astype(np.int64))


def counts(encoded: Encoded) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tp, support, predicted) per class."""
    k = encoded.size
    hit = encoded.gold == encoded.pred
    tp = np.bincount(encoded.gold[hit], minlength=k)
    support = np.bincount(encoded.gold, minlength=k)
    predicted = np.bincount(encoded.pred, minlength=k)
    return tp, support, predicted


@dataclass
class LevelResult:
    """Scores of one level plus the per-class table they were averaged from."""

    macro_precision: float
    macro_recall: float
    macro_f1: float
    micro_f1: float
    classes: np.ndarray
    tp: np.ndarray
    support: np.ndarray
    predicted: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    encoded: Encoded

    def scores(self) -> dict[str, float]:
        return {name: float(getattr(self, name)) for name in SCORES}

    def per_class(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "class": self.classes,
                "precision": self.precision,
                "recall": self.recall,
                "f1": self.f1,
                "support": self.support,
                "predicted": self.predicted,
                "tp": self.tp,
            }
        )


def score_encoded(encoded: Encoded) -> LevelResult:
    """Macro P/R/F1 over the classes present in gold or prediction, and micro F1 (accuracy).

    `encoded.classes` may hold classes that occur in neither (a shared
    vocabulary); they are left out here, as torchmetrics leaves them out.
    """
    tp, support, predicted = counts(encoded)
    present = (support + predicted) > 0
    tp, support, predicted = tp[present], support[present], predicted[present]
    precision, recall, f1 = prf(tp, support, predicted)
    n = len(encoded.gold)
    empty = not present.any()
    return LevelResult(
        macro_precision=0.0 if empty else float(precision.mean()),
        macro_recall=0.0 if empty else float(recall.mean()),
        macro_f1=0.0 if empty else float(f1.mean()),
        micro_f1=float(tp.sum() / n) if n else 0.0,
        classes=encoded.classes[present],
        tp=tp,
        support=support,
        predicted=predicted,
        precision=precision,
        recall=recall,
        f1=f1,
        encoded=encoded,
    )


def score_level(gold: np.ndarray, pred: np.ndarray) -> LevelResult:
    """`score_encoded` for label arrays (any hashable labels)."""
    return score_encoded(encode(gold, pred))


def majority_label(frequency: Mapping[str, int]) -> str:
    """The most frequent label; ties go to the smallest label, so the choice is reproducible."""
    if not frequency:
        raise ValueError("no labels to take the majority of")
    top = max(frequency.values())
    return min(label for label, count in frequency.items() if count == top)


def constant_prediction(encoded: Encoded, label: str) -> Encoded:
    """The same gold with `label` predicted for every note (added to the classes if new)."""
    positions = np.flatnonzero(encoded.classes == label)
    classes = encoded.classes
    if len(positions):
        index = int(positions[0])
    else:
        index = len(classes)
        classes = np.append(classes, np.asarray([label], dtype=object))
    return Encoded(classes, encoded.gold, np.full(len(encoded.gold), index, dtype=np.int64))


def majority_baselines(
    gold: Mapping[str, Encoded], frequency: Mapping[str, Mapping[str, int]], source: str
) -> dict[str, object]:
    """Macro F1 of predicting, at each level, the most frequent reference label for every note.

    `frequency[level]` counts the reference labels (train when known, else gold).
    """
    result: dict[str, object] = {}
    labels = {}
    for level in LEVELS:
        label = majority_label(frequency[level])
        labels[level] = label
        result[f"majority_{level}_macro_f1"] = score_encoded(constant_prediction(gold[level], label)).macro_f1
    result["majority_labels"] = labels
    result["majority_source"] = source
    return result


def graded(gold: Mapping[str, np.ndarray], pred: Mapping[str, np.ndarray]) -> dict[str, float]:
    """How close each answer came: exact code, same category, same chapter, or unrelated (incl. NIL).

    The four fractions are exclusive and sum to 1. A NIL prediction never matches.
    """
    n = len(gold["full_code"])
    if n == 0:
        return {grade: 0.0 for grade in GRADES}
    exact = gold["full_code"] == pred["full_code"]
    category = (gold["category"] == pred["category"]) & ~exact
    chapter = (gold["chapter"] == pred["chapter"]) & ~exact & ~category
    unrelated = ~(exact | category | chapter)
    return {
        "exact": float(exact.mean()),
        "same_category": float(category.mean()),
        "same_chapter": float(chapter.mean()),
        "unrelated": float(unrelated.mean()),
    }


def terciles(result: LevelResult, frequency: Mapping[str, int], source: str) -> dict[str, object]:
    """Macro F1 of the gold classes split by frequency into three equal-sized groups: head, medium, tail.

    Classes are those with test support, ordered by `frequency` (train counts when a
    train split is known, else test support), most frequent first; ties by name.
    """
    table = result.per_class()
    table = table[(table["support"] > 0) & (table["class"] != UNKNOWN_CHAPTER) & (table["class"] != NIL)].copy()
    table["frequency"] = [int(frequency.get(c, 0)) for c in table["class"]]
    table = table.sort_values(["frequency", "class"], ascending=[False, True], kind="mergesort")
    groups = np.array_split(np.arange(len(table)), 3)
    out: dict[str, object] = {"frequency_source": source}
    for name, rows in zip(TERCILES, groups):
        part = table.iloc[rows]
        out[name] = {
            "classes": int(len(part)),
            "macro_f1": float(part["f1"].mean()) if len(part) else 0.0,
            "support": int(part["support"].sum()),
            "min_frequency": int(part["frequency"].min()) if len(part) else 0,
            "max_frequency": int(part["frequency"].max()) if len(part) else 0,
        }
    return out


def vote(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of an (n, k) label array: the column of the majority label (first among ties) and its count."""
    n, k = samples.shape
    if k == 0:
        raise ValueError("no samples to vote on")
    codes, _ = pd.factorize(samples.ravel())
    codes = codes.reshape(n, k)
    agree = np.zeros((n, k), dtype=np.int64)
    for j in range(k):  # k is small (a handful of samples); O(n k^2) vectorised over notes
        agree[:, j] = (codes == codes[:, j : j + 1]).sum(axis=1)
    winner = agree.argmax(axis=1)
    return winner, agree[np.arange(n), winner]


def self_consistency(samples: Mapping[str, np.ndarray]) -> dict[str, object]:
    """Agreement of the k sampled answers of each note with their majority vote, averaged, per level.

    `agreement` is the mean share of samples equal to the majority answer (1 when
    all agree, 1/k when all differ); `unanimous` the share of notes where all agree.
    NIL counts as an answer like any other.
    """
    first = next(iter(samples.values()))
    k = first.shape[1]
    out: dict[str, object] = {"k": int(k), "agreement": {}, "unanimous": {}}
    for level in LEVELS:
        _, count = vote(samples[level])
        out["agreement"][level] = float((count / k).mean()) if len(count) else 0.0
        out["unanimous"][level] = float((count == k).mean()) if len(count) else 0.0
    return out


def per_chapter(result: LevelResult, titles: Mapping[str, str], order: Mapping[str, int]) -> list[dict[str, object]]:
    """One row per chapter present (classification order, NIL last) with P/R/F1, support and predicted."""
    rows = []
    for row in result.per_class().itertuples(index=False):
        name = str(row[0])
        rows.append(
            {
                "chapter": name,
                "title": titles.get(name, "no answer / outside the label space" if name == NIL else "unknown chapter"),
                "precision": float(row.precision),
                "recall": float(row.recall),
                "f1": float(row.f1),
                "support": int(row.support),
                "predicted": int(row.predicted),
            }
        )
    return sorted(rows, key=lambda r: order.get(str(r["chapter"]), 1000 + (r["chapter"] == NIL)))
