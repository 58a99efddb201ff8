"""Patient-disjoint, stratified splits."""

from __future__ import annotations

import random
from collections import Counter, defaultdict

import numpy as np
import pytest

from deepicd.errors import UserError
from deepicd.mimic import splits


def _cohort(seed: int = 0, patients: int = 3000):
    """Patients with 1-4 admissions; codes long-tailed, a patient's admissions often share a code."""
    rng = random.Random(seed)
    vocabulary = [f"C{i:03d}" for i in range(60)]
    weights = [1 / (rank + 2) for rank in range(60)]
    subjects, codes = [], []
    for subject in range(patients):
        own = rng.choices(vocabulary, weights)[0]
        for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4))):
            subjects.append(10_000 + subject)
            codes.append(own if rng.random() < 0.6 else rng.choices(vocabulary, weights)[0])
    return np.array(subjects), codes


def test_patients_never_straddle_splits_and_sizes_follow_the_ratios():
    subjects, codes = _cohort()
    result = splits.assign(subjects, codes, (0.7, 0.1, 0.2), min_count=5, seed=3)
    split_of = defaultdict(set)
    for subject, split in zip(subjects, result):
        split_of[subject].add(int(split))
    assert all(len(s) == 1 for s in split_of.values())
    shares = np.bincount(result, minlength=3) / len(result)
    assert shares == pytest.approx([0.7, 0.1, 0.2], abs=0.02)


def test_each_frequent_code_is_spread_like_the_whole():
    subjects, codes = _cohort()
    result = splits.assign(subjects, codes, (0.7, 0.1, 0.2), min_count=5, seed=3)
    per_code = defaultdict(Counter)
    for code, split in zip(codes, result):
        per_code[code][int(split)] += 1
    for code, counts in per_code.items():
        total = sum(counts.values())
        if total >= 100:
            assert counts[0] / total == pytest.approx(0.7, abs=0.06), code
            assert counts[1] / total == pytest.approx(0.1, abs=0.05), code
            assert counts[2] / total == pytest.approx(0.2, abs=0.06), code
        if total >= 20:  # every split sees the code
            assert counts[1] > 0 and counts[2] > 0, (code, counts)


def test_rare_codes_go_to_train_with_all_admissions_of_their_patients():
    subjects = np.array([1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11])
    codes = ["RARE", "A00", "RARE"] + ["A00"] * 9
    result = splits.assign(subjects, codes, (0.7, 0.1, 0.2), min_count=5, seed=0)
    assert result[0] == result[1] == result[2] == 0
    assert set(result[3:].tolist()) == {0, 1, 2}  # ten A00 admissions, two of them forced to train
    lowered = splits.assign(subjects, codes, (0.7, 0.1, 0.2), min_count=2, seed=0)
    assert lowered[0] == lowered[1]


def test_deterministic_for_a_seed_and_different_across_seeds():
    subjects, codes = _cohort(patients=800)
    first = splits.assign(subjects, codes, seed=5)
    assert np.array_equal(first, splits.assign(subjects, codes, seed=5))
    assert not np.array_equal(first, splits.assign(subjects, codes, seed=6))
    # the input order does not matter, only the admissions themselves
    order = np.random.default_rng(0).permutation(len(codes))
    shuffled = splits.assign(subjects[order], [codes[i] for i in order], seed=5)
    assert np.array_equal(shuffled, first[order])


def test_a_zero_share_split_stays_empty_and_bad_ratios_are_refused():
    subjects, codes = _cohort(patients=300)
    result = splits.assign(subjects, codes, (0.8, 0.0, 0.2), min_count=1, seed=0)
    assert 1 not in set(result.tolist())
    with pytest.raises(UserError, match="split ratios"):
        splits.assign(subjects, codes, (0.5, 0.5))
    with pytest.raises(ValueError):
        splits.assign(subjects, codes[:-1])
