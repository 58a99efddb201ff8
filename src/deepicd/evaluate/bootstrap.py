"""Bootstrap intervals of every headline score, vectorised and seeded.

We use the Poisson bootstrap: in each replicate every note is drawn a
Poisson(1) number of times, instead of drawing exactly n notes with
replacement. The two agree as the test set grows (a multinomial count is a
Poisson count conditioned on the total), and the Poisson form is what makes
a million predictions affordable:

* notes collapse into cells, one per distinct combination of the three
  levels' gold and predicted labels; a cell of c notes is drawn Poisson(c)
  times, so the work grows with the number of cells, not of notes;
* Poisson draws come from inverting a small cumulative table per distinct
  cell size on uniform numbers, several times faster than multinomial draws;
* the per-class counts of every replicate and level come out of one
  product of the (replicates x cells) draws with a sparse cell-to-class
  matrix.

The three levels share the replicates, and the formulas are the ones the point
estimates use (`metrics.prf`), so estimate and interval cannot drift apart.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from deepicd.evaluate.metrics import SCORES, Encoded, prf, safe_divide

# Elements of one (replicates x cells) block; bounds memory to a few hundred MB.
_BLOCK_ELEMENTS = 10_000_000


def joint_cells(encoded: Mapping[str, Encoded]) -> tuple[np.ndarray, np.ndarray]:
    """Cell index of every note and the first note of each cell."""
    first_level = next(iter(encoded.values()))
    n = len(first_level.gold)
    key = np.zeros(n, dtype=np.int64)
    for enc in encoded.values():
        for part in (enc.gold, enc.pred):
            key = key * (int(enc.size) + 1) + part
            key, _ = pd.factorize(key)  # compress after each step so the key never overflows
            key = key.astype(np.int64)
    cells = int(key.max()) + 1 if n else 0
    first = np.full(cells, n, dtype=np.int64)
    np.minimum.at(first, key, np.arange(n, dtype=np.int64))
    return key, first


class PoissonDraws:
    """Poisson(c) draws for cells of sizes c by inverting one cumulative table per distinct size.

    Cells are kept sorted by size (`order`), so each size is one contiguous
    block of rows; draws come out in that sorted order, cells x replicates.
    Large blocks (typically the many cells of one note) first look the
    uniform number up in a 65,536-bin table and fall back to binary search
    only in the few bins that straddle a step of the distribution function,
    so every draw is exact.
    """

    _BINS = 1 << 16

    def __init__(self, sizes: np.ndarray) -> None:
        from scipy.special import gammaln

        self.order = np.argsort(sizes, kind="stable")
        values, starts = np.unique(sizes[self.order], return_index=True)
        self.slices = list(zip(starts.tolist(), np.append(starts[1:], len(sizes)).tolist()))
        self.tables: list[tuple[int, np.ndarray]] = []
        self.lookups: dict[int, np.ndarray] = {}
        for index, value in enumerate(values.tolist()):
            spread = 12 * np.sqrt(value) + 12  # the mass beyond this many steps is below 1e-15
            low, high = max(0, int(value - spread)), int(value + spread) + 1
            k = np.arange(low, high + 1, dtype=np.float64)
            pmf = np.exp(k * np.log(value) - value - gammaln(k + 1)) if value > 0 else (k == 0).astype(float)
            table = np.cumsum(pmf)
            table[-1] = 1.0
            self.tables.append((low, table))
            start, end = self.slices[index]
            if end - start >= 4096:
                self.lookups[index] = self._lookup(table)

    @classmethod
    def _lookup(cls, table: np.ndarray) -> np.ndarray:
        """Draw per bin of the unit interval, or -1 where the draw changes inside the bin."""
        edges = np.arange(cls._BINS + 1, dtype=np.float64) / cls._BINS
        at_start = np.searchsorted(table, edges[:-1], side="right")
        before_end = np.searchsorted(table, np.nextafter(edges[1:], 0.0), side="right")
        return np.where(at_start == before_end, at_start, -1).astype(np.int32)

    def _search(self, index: int, uniform: np.ndarray) -> np.ndarray:
        low, table = self.tables[index]
        lookup = self.lookups.get(index)
        if lookup is None:
            return np.searchsorted(table, uniform, side="right") + low
        found = lookup[(uniform * self._BINS).astype(np.int32)]
        straddling = found < 0
        if straddling.any():
            found[straddling] = np.searchsorted(table, uniform[straddling], side="right")
        return found + low if low else found

    def draw(self, rng: np.random.Generator, replicates: int, dtype=np.float32) -> np.ndarray:
        """(cells x replicates) draws as floats, ready for the sparse product; rows in `order`."""
        uniform = rng.random((len(self.order), replicates))
        draws = np.empty(uniform.shape, dtype=dtype)
        for index, (start, end) in enumerate(self.slices):
            draws[start:end] = self._search(index, uniform[start:end])
        return draws


def _class_matrix(encoded: Mapping[str, Encoded], first: np.ndarray, dtype=np.float32):
    """Sparse (cells x columns) matrix whose product with cell weights gives every level's support,
    predicted and true-positive counts per class, side by side; plus each level's column offset."""
    from scipy import sparse

    rows, cols, offsets = [], [], {}
    cells = np.arange(len(first))
    offset = 0
    for level, enc in encoded.items():
        gold, pred = enc.gold[first], enc.pred[first]
        hit = gold == pred
        offsets[level] = offset
        rows += [cells, cells, cells[hit]]
        cols += [offset + gold, offset + enc.size + pred, offset + 2 * enc.size + gold[hit]]
        offset += 3 * enc.size
    row = np.concatenate(rows)
    data = np.ones(len(row), dtype=dtype)
    matrix = sparse.csr_matrix((data, (row, np.concatenate(cols))), shape=(len(first), offset))
    return matrix, offsets


def _scores(sums: np.ndarray, offset: int, size: int, totals: np.ndarray, scored: np.ndarray) -> np.ndarray:
    """(replicates x 4) scores in SCORES order from one level's block of the class sums.

    `scored` marks the classes that may enter the macro average (NIL is none at chapter level).
    """
    support = sums[:, offset : offset + size].astype(np.float64)
    predicted = sums[:, offset + size : offset + 2 * size].astype(np.float64)
    tp = sums[:, offset + 2 * size : offset + 3 * size].astype(np.float64)
    precision, recall, f1 = prf(tp, support, predicted)
    present = ((support + predicted) > 0) & scored[None, :]
    classes = present.sum(axis=1)
    out = np.empty((sums.shape[0], len(SCORES)), dtype=np.float64)
    for column, per_class in enumerate((precision, recall, f1)):
        out[:, column] = safe_divide((per_class * present).sum(axis=1), classes)
    out[:, 3] = safe_divide(tp.sum(axis=1), totals)
    return out


def replicate_scores(encoded: Mapping[str, Encoded], first: np.ndarray, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Scores of each replicate (columns of `weights`: how often each cell is drawn), per level."""
    matrix, offsets = _class_matrix(encoded, first, weights.dtype)
    sums = np.asarray(matrix.T @ weights).T
    totals = weights.sum(axis=0, dtype=np.float64)
    return {level: _scores(sums, offsets[level], enc.size, totals, enc.scored_mask()) for level, enc in encoded.items()}


def intervals(
    encoded: Mapping[str, Encoded],
    *,
    samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 42,
    progress: bool = False,
) -> dict[str, dict[str, list[float]]]:
    """{level: {score: [low, high]}} percentile intervals; empty when `samples` is 0 or there are no notes."""
    first_level = next(iter(encoded.values()))
    n = len(first_level.gold)
    if samples <= 0 or n == 0:
        return {}
    key, first = joint_cells(encoded)
    draws = PoissonDraws(np.bincount(key))
    # float32 counts are exact below 2**24; the sums of a replicate stay below that for n < 2**23.
    dtype = np.float32 if n < 2**23 else np.float64
    matrix, offsets = _class_matrix(encoded, first[draws.order], dtype)  # rows in the draws' order
    transposed = matrix.T.tocsr()
    rng = np.random.default_rng(seed)
    block = max(1, min(samples, _BLOCK_ELEMENTS // max(len(first), 1)))
    collected: dict[str, list[np.ndarray]] = {level: [] for level in encoded}
    starts = range(0, samples, block)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc="bootstrap", unit="block", leave=False)
    for start in starts:
        weights = draws.draw(rng, min(block, samples - start), dtype)
        sums = np.asarray(transposed @ weights).T
        totals = weights.sum(axis=0, dtype=np.float64)
        for level, enc in encoded.items():
            collected[level].append(_scores(sums, offsets[level], enc.size, totals, enc.scored_mask()))
    low_q = (1.0 - confidence) / 2.0
    result: dict[str, dict[str, list[float]]] = {}
    for level, parts in collected.items():
        replicates = np.concatenate(parts)
        bounds = np.quantile(replicates, [low_q, 1.0 - low_q], axis=0)
        result[level] = {name: [float(bounds[0, i]), float(bounds[1, i])] for i, name in enumerate(SCORES)}
    return result
