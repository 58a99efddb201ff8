"""Evaluation of first-diagnosis predictions at chapter, category and full-code level.

`deepicd evaluate` scores one answer per note the way the paper does (per-level
projection, macro averages over the classes present, NIL a class below chapter
level), with the published quirks fixed, plus what the paper leaves out:
bootstrap intervals, a majority-class baseline, frequency terciles, graded
accuracy and self-consistency. `deepicd report` lines several evaluations up as
Tables 3 and 4 and draws Figure 4.

Modules: `labels` (label space, level projection), `metrics` (scores from
confusion counts), `bootstrap`, `evaluation` (parse + score, no I/O), `inputs`,
`prompting` (which prompt, which reading), `prompt_filter` (max_prompt_tokens),
`generation` (--model mode), `report`, `plots`, `manifest`, `run` (the stage),
`table` (Table 3 across runs), `table4` (reasoning vs outcome-only fine-tuning),
`figure4` (per-chapter F1 against SFT samples).
"""

from deepicd.evaluate.labels import LEVELS, NIL

__all__ = ["LEVELS", "NIL"]
