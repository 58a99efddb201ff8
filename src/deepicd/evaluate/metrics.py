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
* at chapter level NIL is not a class (the published chapter vocabulary is the
  chapters themselves): an answer without a chapter is a false negative of the
  gold chapter and a false positive of nothing; `Encoded.scored` marks it;
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
    """Gold and predictions of one level as indices into `classes`.

    `scored` (one bool per class, None: all) says which classes take part in the
    macro average. An unscored label still counts where it matters for the
    others: predicted for a note, it is a miss of that note's gold class.
    """

    classes: np.ndarray  # object array of class names; every class occurs in gold or prediction
    gold: np.ndarray  # int64 indices, one per note
    pred: np.ndarray
    scored: np.ndarray | None = None

    @property
    def size(self) -> int:
        return len(self.classes)

    def scored_mask(self) -> np.ndarray:
        """One bool per class: True where the class may enter the macro average."""
        return np.ones(self.size, dtype=bool) if self.scored is None else self.scored


def unscored_mask(classes: np.ndarray, unscored: tuple[str, ...] | frozenset[str]) -> np.ndarray | None:
    """`Encoded.scored` for `classes` with the labels in `unscored` left out; None when none is."""
    if not unscored:
        return None
    mask = ~np.isin(classes.astype(str), list(unscored))
    return None if mask.all() else mask


def encode(gold: np.ndarray, pred: np.ndarray, unscored: tuple[str, ...] = ()) -> Encoded:
    """Factorise gold and predicted labels together, so one index means one class in both."""
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold labels but {len(pred)} predictions")
    codes, classes = pd.factorize(np.concatenate([np.asarray(gold, dtype=object), np.asarray(pred, dtype=object)]))
    n = len(gold)
    classes = np.asarray(classes, dtype=object)
    return Encoded(classes, codes[:n].astype(np.int64), codes[n:].astype(np.int64), unscored_mask(classes, unscored))


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
    Unscored classes (`encoded.scored`) are left out too; their notes still count
    as misses of the gold class and in micro F1.
    """
    tp, support, predicted = counts(encoded)
    present = ((support + predicted) > 0) & encoded.scored_mask()
    tp, support, predicted = tp[present], support[present], predicted[present]
    precision, recall, f1 = prf(tp, support, predicted)
    n = len(encoded.gold)
    empty = not present.any()
    return LevelResult(
        macro_precision=0.0 if empty else float(precision.mean()),
        macro_recall=0.0 if empty else float(recall.mean()),
        macro_f1=0.0 if empty else float(f1.mean()),
        micro_f1=float(tp.sum() / n) if n else 0.0,  # tp of unscored classes is 0: they never occur in gold
        classes=encoded.classes[present],
        tp=tp,
        support=support,
        predicted=predicted,
        precision=precision,
        recall=recall,
        f1=f1,
        encoded=encoded,
    )


def score_level(gold: np.ndarray, pred: np.ndarray, unscored: tuple[str, ...] = ()) -> LevelResult:
    """`score_encoded` for label arrays (any hashable labels); `unscored` labels are no class of the average."""
    return score_encoded(encode(gold, pred, unscored))


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
    scored = encoded.scored
    if len(positions):
        index = int(positions[0])
    else:
        index = len(classes)
        classes = np.append(classes, np.asarray([label], dtype=object))
        scored = None if scored is None else np.append(scored, True)
    return Encoded(classes, encoded.gold, np.full(len(encoded.gold), index, dtype=np.int64), scored)


def majority_baselines(
    gold: Mapping[str, Encoded], frequency: Mapping[str, Mapping[str, int]], source: str
) -> dict[str, object]:
    """Macro F1 of predicting, at each level, the most frequent reference label for every note.

    `frequency[level]` counts the reference labels (train when known, else gold).
    """
    result: dict[str, object] = {}
    labels, scores = {}, {}
    for level in LEVELS:
        label = majority_label(frequency[level])
        labels[level] = label
        scored = score_encoded(constant_prediction(gold[level], label)).scores()
        result[f"majority_{level}_macro_f1"] = scored["macro_f1"]
        scores[level] = {key: scored[key] for key in ("macro_recall", "macro_precision", "macro_f1")}
    result["majority_scores"] = scores  # the majority row of Table 3
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


def _gold_classes(result: LevelResult, frequency: Mapping[str, int] | None) -> pd.DataFrame:
    """Per-class rows of the gold classes (NIL and unknown chapters left out) with their `frequency`,
    most frequent first, ties by name; `frequency` None: the gold support itself."""
    table = result.per_class()
    table = table[(table["support"] > 0) & (table["class"] != UNKNOWN_CHAPTER) & (table["class"] != NIL)].copy()
    if frequency is None:
        table["frequency"] = table["support"].astype(int)
    else:
        table["frequency"] = [int(frequency.get(c, 0)) for c in table["class"]]
    return table.sort_values(["frequency", "class"], ascending=[False, True], kind="mergesort")


def _groups(table: pd.DataFrame, groups: list[np.ndarray], source: str) -> dict[str, object]:
    out: dict[str, object] = {"frequency_source": source}
    for name, rows in zip(TERCILES, groups):
        part = table.iloc[rows]
        out[name] = {
            "classes": int(len(part)),
            "macro_f1": float(part["f1"].mean()) if len(part) else 0.0,
            "support": int(part["support"].sum()),
            "min_frequency": int(part["frequency"].min()) if len(part) else 0,
            "max_frequency": int(part["frequency"].max()) if len(part) else 0,
            "members": [str(c) for c in part["class"]] if len(part) <= 30 else None,
        }
    return out


def terciles(result: LevelResult, frequency: Mapping[str, int], source: str) -> dict[str, object]:
    """Macro F1 of the gold classes split by frequency into three equal-sized groups: head, medium, tail.

    Classes are those with test support, ordered by `frequency` (train counts when a
    train split is known, else test support), most frequent first; ties by name.
    This is the split the published code logs (per-class scores cut into thirds).
    """
    table = _gold_classes(result, frequency)
    return _groups(table, np.array_split(np.arange(len(table)), 3), source)


def mass_groups(mass: np.ndarray) -> np.ndarray:
    """Tercile (0 head, 1 medium, 2 tail) of each class, given their masses sorted largest first.

    A class belongs to the third in which its share of the cumulative mass starts.
    """
    mass = np.asarray(mass, dtype=np.float64)
    total = mass.sum()
    before = np.concatenate([[0.0], np.cumsum(mass)[:-1]]) / total if total > 0 else np.zeros(len(mass))
    return np.where(before < 1 / 3, 0, np.where(before < 2 / 3, 1, 2))


def mass_terciles(result: LevelResult, frequency: Mapping[str, int] | None = None, source: str = "gold") -> dict[str, object]:
    """Macro F1 of the gold classes split into three groups of equal *sample mass*, as the paper's Figure 4.

    Classes are ordered by `frequency` (None: their gold support), most frequent
    first; the head holds the most frequent classes until a third of the total
    frequency is covered, the medium group the next ones until two thirds, the
    tail the rest. With chapters, the two largest usually make the head alone.
    A class goes to the group in which its cumulative mass *starts*, so no group
    is empty while there are at least three classes of similar size.
    """
    table = _gold_classes(result, frequency)
    mass = table["frequency"].to_numpy(dtype=np.float64)
    total = mass.sum()
    group = mass_groups(mass)
    out = _groups(table, [np.flatnonzero(group == g) for g in range(3)], source)
    for name, g in zip(TERCILES, range(3)):
        out[name]["mass_share"] = float(mass[group == g].sum() / total) if total > 0 else 0.0
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
