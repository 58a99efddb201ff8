"""Paired bootstrap of the difference between two models scored on the same test notes.

Two evaluations of one test set are not independent samples: the same hard
notes trip both models. Resampling notes (not models) and recomputing both
scores on each resample keeps that pairing, so the interval of the
difference is much narrower than two separate intervals would suggest, and
"the interval lies above zero" is the test that a later stage improved on an
earlier one. Two statistics are offered: the mean rule reward of the answers
(the paper's reward without the judge, which needs a server) and macro F1 at a
level, each recomputed on every resample.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from deepicd.evaluate import metrics


@dataclass(frozen=True)
class Difference:
    """`after` minus `before`: the estimate and its percentile interval."""

    statistic: str
    before: float
    after: float
    difference: float
    low: float
    high: float
    confidence: float
    samples: int
    n: int

    @property
    def above_zero(self) -> bool:
        return self.low > 0

    def as_dict(self) -> dict:
        return {**asdict(self), "above_zero": self.above_zero}


def read_rows(path: Path) -> dict[str, dict]:
    """predictions.jsonl of an evaluation (or its folder), by note id."""
    path = Path(path)
    if path.is_dir():
        path = path / "predictions.jsonl"
    rows = (json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    return {str(row["id"]): row for row in rows}


def rule_rewards(rows: list[dict], preset: str = "paper") -> np.ndarray:
    """The reward preset's rule terms (no judge) of each row's completion against its gold code."""
    from deepicd.rewards.config import load_reward_config
    from deepicd.rewards.scorer import RewardScorer

    scorer = RewardScorer(load_reward_config(preset))
    return np.array([scorer.score_rules(row["completion"], [row["gold"]]).total for row in rows], dtype=float)


def labels(rows: list[dict], level: str) -> tuple[np.ndarray, np.ndarray]:
    """Gold and predicted labels at `level`; no answer is NIL, so it counts as a miss."""
    gold = np.array([row["levels"][level]["gold"] for row in rows], dtype=object)
    pred = np.array([row["levels"][level]["prediction"] or "NIL" for row in rows], dtype=object)
    return gold, pred


def bootstrap(statistic: Callable[[np.ndarray], tuple[float, float]], n: int, samples: int, seed: int,
              confidence: float, name: str) -> Difference:
    """Resample note indices with replacement; `statistic(indices)` gives (before, after) on them."""
    if n == 0:
        raise ValueError("no notes in common")
    before, after = statistic(np.arange(n))
    rng = np.random.default_rng(seed)
    draws = np.empty(samples)
    for i in range(samples):
        b, a = statistic(rng.integers(0, n, n))
        draws[i] = a - b
    tail = (1 - confidence) / 2
    low, high = (np.quantile(draws, [tail, 1 - tail]) if samples else (after - before, after - before))
    return Difference(name, float(before), float(after), float(after - before), float(low), float(high),
                      confidence, samples, n)


def compare(before: Path, after: Path, *, samples: int = 1000, seed: int = 0, confidence: float = 0.95,
            level: str = "category", preset: str = "paper") -> dict[str, Difference]:
    """Mean rule reward and macro F1 at `level` of `after` minus `before`, over the notes both evaluated."""
    first, second = read_rows(before), read_rows(after)
    ids = sorted(set(first) & set(second))
    a_rows, b_rows = [first[i] for i in ids], [second[i] for i in ids]
    reward_a, reward_b = rule_rewards(a_rows, preset), rule_rewards(b_rows, preset)
    gold, pred_a = labels(a_rows, level)
    _, pred_b = labels(b_rows, level)

    def mean_reward(index: np.ndarray) -> tuple[float, float]:
        return reward_a[index].mean(), reward_b[index].mean()

    def macro_f1(index: np.ndarray) -> tuple[float, float]:
        return tuple(metrics.score_encoded(metrics.encode(gold[index], pred[index])).macro_f1
                     for pred in (pred_a, pred_b))

    return {
        "mean_reward": bootstrap(mean_reward, len(ids), samples, seed, confidence, "mean reward (rules)"),
        f"{level}_macro_f1": bootstrap(macro_f1, len(ids), samples, seed, confidence, f"{level} macro F1"),
    }
