"""The label space and the projection of codes onto the three evaluation levels.

A prediction is scored at three levels: full code, category (first three
characters) and chapter. Each level has its own label space, the projection
of the full-code label space (the train labels): a prediction whose projection
falls outside it is NIL at that level. The published evaluation got three
things wrong here, each of which silently inflated chapter scores; we fix them:

* an empty or unparseable answer was counted as chapter I (the first chapter
  whose upper bound compares greater than "");
* chapters came from string comparison, so free text like "PNE" landed in a
  chapter;
* NIL itself was sent through that comparison and became chapter XIV.

Here anything unparseable or malformed has no label at any level, and NIL stays
NIL. Chapters come from `deepicd.icd`, which reads the release's chapter ranges.
At chapter level NIL is a label but no class of the average (see `metrics`).

A fourth quirk is reproduced on purpose, because the paper's numbers depend on
it: the published code projected the raw answer string, so "I21.4 - NSTEMI"
earned category I21 and chapter IX (its full code, the whole string, matched
nothing). `leading_code` decides how an answer that starts with a well-formed
code followed by other text is read: `levels` (default, as published: the
leading code's category and chapter, no full code), `code` (the leading code
at every level) or `off` (the whole answer must be a code).

Work is done once per distinct string (pandas factorisation), never per row,
so a million predictions cost as much as their few thousand distinct values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from deepicd import icd

LEVELS = ("chapter", "category", "full_code")
NIL = "NIL"
class NilScope(StrEnum):
    level = "level"  # NIL at a level when the projection is outside that level's label space (as published)
    all = "all"  # NIL at every level once the full code is outside the label space


class LeadingCode(StrEnum):
    levels = "levels"  # "I21.4 - NSTEMI" earns the category and chapter, not the full code (as published)
    code = "code"  # the leading code is read at every level
    off = "off"  # such an answer is unparseable
# The first token of an answer: letters and digits up to the first other character ("I214 - NSTEMI" -> "I214").
_LEADING_TOKEN = re.compile(r"[A-Za-z0-9]+")
# A gold code whose chapter the release cannot tell (malformed gold). Kept apart from NIL so that a
# NIL prediction is never counted as a hit.
UNKNOWN_CHAPTER = "?"


def chapter_key(code: str) -> str | None:
    """The chapter of a code as a Roman numeral ("IX"), or None when no chapter range holds it."""
    found = icd.chapter(code)
    return found.roman if found is not None else None


def chapter_titles() -> dict[str, str]:
    """Roman numeral -> "A00-B99 Certain infectious and parasitic diseases", for reports."""
    return {c.roman: f"{c.range} {c.title}" for c in icd.chapters()}


def chapter_order() -> dict[str, int]:
    """Roman numeral -> chapter number, to sort chapters as the classification does."""
    return {c.roman: c.number for c in icd.chapters()}


@dataclass(frozen=True)
class LabelSpace:
    """Allowed classes per level; `source` says where the full codes came from.

    `train_counts` holds the train frequency of each code when the labels file
    records it (preprocess writes `train_count`), for baselines and terciles
    when no train split is at hand.
    """

    full_code: frozenset[str]
    source: str
    train_counts: dict[str, int] | None = field(default=None, compare=False, hash=False)

    @cached_property
    def category(self) -> frozenset[str]:
        return frozenset(code[:3] for code in self.full_code)

    @cached_property
    def chapter(self) -> frozenset[str]:
        keys = (chapter_key(code) for code in self.category)
        return frozenset(key for key in keys if key is not None)

    def level(self, name: str) -> frozenset[str]:
        return getattr(self, name)

    def extended(self, codes: Iterable[str]) -> tuple["LabelSpace", list[str]]:
        """The space with `codes` added, and the codes that were new (sorted)."""
        added = sorted(set(codes) - self.full_code)
        if not added:
            return self, []
        return LabelSpace(self.full_code | frozenset(added), self.source, self.train_counts), added


def read_labels(path: Path) -> LabelSpace:
    """The label space of a preprocess `labels.csv`: column `code`; its NIL row is dropped."""
    from deepicd.errors import UserError

    if not path.is_file():
        raise UserError(f"labels file not found: {path}")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read labels file {path}: {exc}") from None
    if "code" not in table.columns:
        raise UserError(f"labels file {path} has no column 'code' (columns: {', '.join(table.columns) or 'none'})")
    table["code"] = [icd.normalize(code) for code in table["code"]]
    table = table[(table["code"] != NIL) & (table["code"] != "")]
    if table.empty:
        raise UserError(f"labels file {path} lists no codes besides NIL")
    counts = None
    if "train_count" in table.columns:
        numbers = pd.to_numeric(table["train_count"], errors="coerce")
        if numbers.isna().any():
            row = int(np.flatnonzero(numbers.isna().to_numpy())[0])
            raise UserError(f"labels file {path}: 'train_count' is not a number for code {table['code'].iloc[row]!r}")
        counts = {code: int(n) for code, n in zip(table["code"], numbers) if n > 0}
    return LabelSpace(frozenset(table["code"]), str(path), counts or None)


@dataclass
class Projected:
    """Labels of every row at each level, stored once per distinct input string.

    `codes[i]` indexes the distinct inputs; `names[level][j]` is the label of
    distinct input j at that level. Rows are only ever touched by integer
    indexing, which keeps a million predictions cheap.
    """

    codes: np.ndarray  # int64 per row
    names: dict[str, list[str]]  # per level, one label per distinct input
    valid: np.ndarray  # bool per distinct input
    leading: np.ndarray | None = None  # bool per distinct input: read through its leading code

    def strings(self, level: str) -> np.ndarray:
        return np.asarray(self.names[level], dtype=object)[self.codes]

    def valid_rows(self) -> np.ndarray:
        return self.valid[self.codes]


def _factorize(values: Sequence[str | None] | np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Distinct values and each row's index; a missing value (None) gets the index after the last."""
    codes, uniques = pd.factorize(pd.Series(values, dtype=object), use_na_sentinel=True)
    codes = codes.astype(np.int64)
    codes[codes < 0] = len(uniques)
    return codes, [str(u) for u in uniques]


def factorize_gold(gold: Sequence[str] | np.ndarray) -> Projected:
    """Gold codes (normalised strings) at every level; gold is never NIL."""
    codes, uniques = _factorize(gold)
    names = {
        "chapter": [chapter_key(u) or UNKNOWN_CHAPTER for u in uniques] + [UNKNOWN_CHAPTER],
        "category": [u[:3] for u in uniques] + [UNKNOWN_CHAPTER],
        "full_code": uniques + [UNKNOWN_CHAPTER],
    }
    return Projected(codes, names, np.ones(len(uniques) + 1, dtype=bool))


def gold_levels(gold: Sequence[str] | np.ndarray) -> dict[str, np.ndarray]:
    """Gold codes projected onto every level, as string arrays."""
    projected = factorize_gold(gold)
    return {level: projected.strings(level) for level in LEVELS}


def leading_code(answer: str, paper_pattern: bool = False) -> str | None:
    """The well-formed code an answer starts with when other text follows it ("I214 - NSTEMI" -> "I214").

    None when the answer is a code itself, or does not start with one: the token
    must end where the first character other than a letter or digit begins, so
    "I214NSTEMI" has no leading code.
    """
    match = _LEADING_TOKEN.match(answer)
    if match is None or match.end() == len(answer):
        return None
    token = match.group(0)
    return token if icd.is_well_formed(token, paper_pattern=paper_pattern) else None


def _project_code(code: str, space: LabelSpace | None, nil_scope: str) -> tuple[str, str, str]:
    """Labels of a well-formed code at (chapter, category, full code)."""
    chapter = chapter_key(code) or NIL
    if space is None:  # no label space: every well-formed code stands for itself
        return chapter, code[:3], code
    full = code if code in space.full_code else NIL
    if nil_scope == "all" and full == NIL:
        return NIL, NIL, NIL
    category = code[:3] if code[:3] in space.category else NIL
    return (chapter if chapter in space.chapter else NIL), category, full


def _project_one(
    answer: str, space: LabelSpace | None, paper_pattern: bool, nil_scope: str, leading: str
) -> tuple[tuple[str, str, str], bool]:
    """(chapter, category, full code) of one distinct answer, and whether its leading code was used."""
    if answer and icd.is_well_formed(answer, paper_pattern=paper_pattern):
        return _project_code(answer, space, nil_scope), False
    token = leading_code(answer, paper_pattern) if answer and leading != "off" else None
    if token is None:
        return (NIL, NIL, NIL), False
    chapter, category, full = _project_code(token, space, nil_scope)
    if leading == "levels":  # as published: the whole string is compared at full-code level and never matches
        if nil_scope == "all" and space is not None:
            return (NIL, NIL, NIL), True
        full = NIL
    return (chapter, category, full), True


def factorize_predictions(
    predictions: Sequence[str | None],
    space: LabelSpace | None,
    *,
    paper_pattern: bool = False,
    nil_scope: str = "level",
    leading: str = "levels",
) -> Projected:
    """Parsed codes (None: no pair) at every level, NIL where unparseable or outside the label space.

    Valid means a well-formed code; validity does not depend on the label space,
    and an answer read through its leading code (`leading`) is not valid.
    With `space` None, every well-formed code is its own class (used to compare
    a note's samples with each other, where the label space is beside the point).
    """
    codes, uniques = _factorize(predictions)
    projected = [_project_one(u, space, paper_pattern, nil_scope, leading) for u in uniques]
    rows = [row for row, _ in projected] + [(NIL, NIL, NIL)]
    names = {level: [row[position] for row in rows] for position, level in enumerate(LEVELS)}
    valid = np.asarray([bool(u) and icd.is_well_formed(u, paper_pattern=paper_pattern) for u in uniques] + [False])
    used = np.asarray([used for _, used in projected] + [False])
    return Projected(codes, names, valid, used)


def project_predictions(
    predictions: Sequence[str | None],
    space: LabelSpace | None,
    *,
    paper_pattern: bool = False,
    nil_scope: str = "level",
    leading: str = "levels",
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """`factorize_predictions` as string arrays per level, plus the validity of each row."""
    projected = factorize_predictions(predictions, space, paper_pattern=paper_pattern, nil_scope=nil_scope, leading=leading)
    return {level: projected.strings(level) for level in LEVELS}, projected.valid_rows()
