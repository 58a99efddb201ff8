"""Evaluation of first-diagnosis predictions at chapter, category and full-code level.

`deepicd evaluate` scores one answer per note the way the paper does (macro
averages over the classes present, NIL for answers outside the label space),
with the published quirks fixed, plus what the paper leaves out: bootstrap
intervals, a majority-class baseline, frequency terciles, graded accuracy and
self-consistency. `deepicd report` lines several evaluations up as Table 3.

Modules: `labels` (label space, level projection), `metrics` (scores from
confusion counts), `bootstrap`, `evaluation` (parse + score, no I/O), `inputs`,
`generation` (--model mode), `report`, `plots`, `manifest`, `run` (the stage),
`table` (Table 3 across runs).
"""

from deepicd.evaluate.labels import LEVELS, NIL

__all__ = ["LEVELS", "NIL"]
