"""Patient-disjoint, label-stratified train/val/test splits.

Two admissions of one patient share history, medications and often the
diagnosis, so they must fall in the same split or the test set leaks. Within
that constraint the split is stratified on the target code so rare codes are
represented in proportion.

The assignment is a greedy iterative stratification over patients: patients
are visited rarest-code first (random order among equals, from the seed), and
each goes to the split that lags furthest behind its share of the patient's
codes among the admissions placed so far (ties: the split furthest below its
overall share). Measuring the lag against what has been placed, rather than
against final totals, keeps small codes in proportion instead of filling train
first. Codes seen fewer
than `min_count` times cannot be stratified; their patients go to train, so the
label space keeps them. Pure function of its inputs and the seed.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Sequence

import numpy as np

from deepicd.errors import UserError

SPLITS = ("train", "val", "test")


def mix(values: np.ndarray, seed: int) -> np.ndarray:
    """A seeded 64-bit hash of integers (splitmix64 finaliser): a stable pseudo-random order key."""
    with np.errstate(over="ignore"):
        x = values.astype(np.uint64) ^ np.uint64((seed * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def assign(
    subject_ids: Sequence[int],
    codes: Sequence[str],
    ratios: Sequence[float] = (0.7, 0.1, 0.2),
    min_count: int = 5,
    seed: int = 0,
) -> np.ndarray:
    """Split index (0 train, 1 val, 2 test) for each admission, given its patient and target code."""
    if len(subject_ids) != len(codes):
        raise ValueError("subject_ids and codes must have the same length")
    total_ratio = float(sum(ratios))
    if len(ratios) != len(SPLITS) or total_ratio <= 0 or min(ratios) < 0:
        raise UserError(f"split ratios must be three non-negative numbers with a positive sum, not {list(ratios)}")
    share = [r / total_ratio for r in ratios]
    counts = Counter(codes)
    rows_of: dict[int, list[int]] = defaultdict(list)
    for row, subject in enumerate(subject_ids):
        rows_of[int(subject)].append(row)

    result = np.zeros(len(codes), dtype=np.int8)
    have: list[dict[str, int]] = [{} for _ in SPLITS]
    placed: dict[str, int] = {}
    size = [0, 0, 0]
    free: list[int] = []
    for subject, rows in rows_of.items():
        if any(counts[codes[r]] < min_count for r in rows):
            for r in rows:
                code = codes[r]
                have[0][code] = have[0].get(code, 0) + 1
                placed[code] = placed.get(code, 0) + 1
            size[0] += len(rows)
        else:
            free.append(subject)

    subjects = np.array(free, dtype=np.int64)
    tiebreak = mix(subjects, seed)
    rarity = np.array([min(counts[codes[r]] for r in rows_of[s]) for s in free], dtype=np.int64)
    active = [split for split in range(len(SPLITS)) if share[split] > 0]
    for index in np.lexsort((subjects, tiebreak, rarity)).tolist():
        rows = rows_of[free[index]]
        mine = [(codes[rows[0]], 1)] if len(rows) == 1 else list(Counter(codes[r] for r in rows).items())
        n_placed = size[0] + size[1] + size[2] + len(rows)
        best, best_key = active[0], None
        for split in active:
            part, got = share[split], have[split]
            # how far the split would lag its share of each code, counting this patient as placed
            lag = 0.0
            for code, k in mine:
                lag += part * (placed.get(code, 0) + k) - got.get(code, 0)
            key = (lag, part * n_placed - size[split])
            if best_key is None or key > best_key:
                best, best_key = split, key
        got = have[best]
        for code, k in mine:
            got[code] = got.get(code, 0) + k
            placed[code] = placed.get(code, 0) + k
        result[rows] = best
        size[best] += len(rows)
    return result
