"""Bootstrap intervals: exact agreement with rescoring each resampled test set, and reproducibility."""

from __future__ import annotations

import numpy as np
import pytest

from deepicd.evaluate import bootstrap, metrics
from deepicd.evaluate.labels import NIL


def _levels(n: int, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    codes = np.asarray(["I214", "I219", "I500", "J189", "J449", "K359", "N390"], dtype=object)
    gold = codes[rng.integers(0, len(codes), n)]
    noise = np.append(codes, NIL)[rng.integers(0, len(codes) + 1, n)]
    pred = np.where(rng.random(n) < 0.5, gold, noise)
    chapter = {"I": "IX", "J": "X", "K": "XI", "N": "XIV"}
    as_chapter = np.vectorize(lambda c: NIL if c == NIL else chapter[c[0]], otypes=[object])
    as_category = np.vectorize(lambda c: NIL if c == NIL else c[:3], otypes=[object])
    return {
        "chapter": (as_chapter(gold), as_chapter(pred)),
        "category": (as_category(gold), as_category(pred)),
        "full_code": (gold, pred),
    }


# As in an evaluation: NIL is no class of the chapter macro average.
UNSCORED = {"chapter": (NIL,), "category": (), "full_code": ()}


def _encoded(n: int = 300, seed: int = 0) -> dict[str, metrics.Encoded]:
    return {level: metrics.score_level(g, p, UNSCORED[level]).encoded for level, (g, p) in _levels(n, seed).items()}


def test_replicate_scores_equal_rescoring_the_resampled_rows():
    encoded = _encoded()
    assert encoded["chapter"].scored is not None and not encoded["chapter"].scored.all()
    key, first = bootstrap.joint_cells(encoded)
    draws = bootstrap.PoissonDraws(np.bincount(key))
    weights = draws.draw(np.random.default_rng(3), 5)  # cells (in draws.order) x replicates
    cells = first[draws.order]
    fast = bootstrap.replicate_scores(encoded, cells, weights)
    for level, enc in encoded.items():
        for b in range(weights.shape[1]):
            rows = np.repeat(cells, weights[:, b].astype(int))  # a resampled test set: each cell's row, as often as drawn
            slow = metrics.score_level(enc.classes[enc.gold[rows]], enc.classes[enc.pred[rows]], UNSCORED[level])
            assert fast[level][b].tolist() == pytest.approx(
                [slow.macro_precision, slow.macro_recall, slow.macro_f1, slow.micro_f1]
            ), (level, b)


def test_poisson_draws_have_the_mean_and_variance_of_the_cell_sizes():
    sizes = np.asarray([1, 1, 2, 5, 1, 40, 3, 1000], dtype=np.int64)
    poisson = bootstrap.PoissonDraws(sizes)
    draws = poisson.draw(np.random.default_rng(0), 20000, np.float64)
    expected = sizes[poisson.order]
    assert np.all(draws >= 0) and np.all(draws == np.round(draws))
    assert draws.mean(axis=1) == pytest.approx(expected, rel=0.03)
    assert draws.var(axis=1) == pytest.approx(expected, rel=0.08)
    assert (draws[expected == 1] == 0).mean() == pytest.approx(np.exp(-1), abs=0.01)


def test_binned_lookup_draws_exactly_what_binary_search_draws():
    sizes = np.concatenate([np.ones(6000, dtype=np.int64), np.full(5000, 7), [300]])
    fast = bootstrap.PoissonDraws(sizes)
    assert fast.lookups, "large groups of equal-sized cells use the binned lookup"
    plain = bootstrap.PoissonDraws(sizes)
    plain.lookups = {}
    a = fast.draw(np.random.default_rng(11), 40, np.float64)
    b = plain.draw(np.random.default_rng(11), 40, np.float64)
    assert np.array_equal(a, b)


def test_cells_keep_every_level_of_every_row():
    encoded = _encoded(200, seed=5)
    key, first = bootstrap.joint_cells(encoded)
    for enc in encoded.values():
        assert np.array_equal(enc.gold[first][key], enc.gold)
        assert np.array_equal(enc.pred[first][key], enc.pred)


def test_same_seed_same_intervals_other_seed_other_intervals():
    encoded = _encoded()
    a = bootstrap.intervals(encoded, samples=200, seed=7)
    b = bootstrap.intervals(encoded, samples=200, seed=7)
    c = bootstrap.intervals(encoded, samples=200, seed=8)
    assert a == b
    assert a != c


def test_intervals_bracket_the_point_estimate_and_narrow_with_more_notes():
    small = _levels(200, seed=1)
    large = _levels(5000, seed=1)
    widths = []
    for data in (small, large):
        encoded = {level: metrics.score_level(g, p).encoded for level, (g, p) in data.items()}
        out = bootstrap.intervals(encoded, samples=300, seed=0)
        point = metrics.score_level(*data["full_code"])
        low, high = out["full_code"]["macro_f1"]
        assert low <= point.macro_f1 <= high
        assert 0.0 <= low <= high <= 1.0
        widths.append(high - low)
    assert widths[1] < widths[0] / 2


def test_zero_samples_means_no_intervals():
    assert bootstrap.intervals(_encoded(), samples=0) == {}
