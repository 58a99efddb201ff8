"""The synthetic data's codes: a long-tailed vocabulary of real ICD-10-CM leaf codes and what notes say of them.

First codes are leaf codes of the release, chapters weighted like a general
hospital's principal diagnoses (`phrases.FIRST_CODE_CHAPTER_WEIGHTS`), drawn
with Zipf-Mandelbrot frequencies by rank: a few codes are common, most are rare,
as in MIMIC-IV. A `CodeProfile` holds the phrases a note may use about a code:
its description, inclusion terms and category, from `deepicd.icd`.
"""

from __future__ import annotations

import itertools
import random
import re
from dataclasses import dataclass
from functools import lru_cache

from deepicd import icd
from deepicd.mimic import phrases
from deepicd.errors import UserError

PAPER_VOCABULARY = 6400  # most distinct first codes when `codes` is not given (the paper has 6,369)
ZIPF_SHIFT, ZIPF_EXPONENT = 2.7, 1.05  # top code ~4% of admissions for a 6,400-code vocabulary


@dataclass(frozen=True)
class CodeProfile:
    """What the generator says about one first code: its chapter words and its tabular text."""

    code: str
    chapter: int
    description: str
    clues: tuple[str, ...]  # phrases from the code's description, inclusion terms and category
    keyword: str  # a short noun phrase for the chief complaint


def prose(text: str) -> str:
    """Lower-case the first letter of a tabular title unless it starts an acronym ("NSTEMI")."""
    if len(text) > 1 and text[0].isupper() and not text[1].isupper():
        return text[0].lower() + text[1:]
    return text


def _keyword(description: str) -> str:
    head = re.sub(r"\s*\([^)]*\)", "", description).split(",")[0].strip()
    return prose(" ".join(head.split()[:5]))


@lru_cache(maxsize=None)
def profile(code: str) -> CodeProfile:
    """The generator's view of a code of the release, from `deepicd.icd`."""
    entries = icd.tabular_entries(code)
    description = entries[0].description
    clues = [prose(description)]
    for entry in entries[:2]:
        clues.extend(prose(term) for term in entry.inclusion_terms if len(term) < 90)
    if len(entries) > 1 and entries[1].description != description:
        clues.append(prose(entries[1].description))
    chapter = icd.chapter(code)
    return CodeProfile(code, chapter.number if chapter else 18, description, tuple(clues), _keyword(description))


@lru_cache(maxsize=1)
def _candidates_by_chapter() -> dict[int, tuple[str, ...]]:
    """Leaf codes that could plausibly head a discharge: no 7th-character subsequent/sequela encounters."""
    pools: dict[int, list[str]] = {number: [] for number in phrases.FIRST_CODE_CHAPTER_WEIGHTS}
    for code in icd.leaf_codes():
        if len(code) == 7 and not code.endswith("A"):
            continue
        chapter = icd.chapter(code)
        if chapter is not None and chapter.number in pools:
            pools[chapter.number].append(code)
    return {number: tuple(codes) for number, codes in pools.items() if codes}


def choose_vocabulary(rng: random.Random, size: int) -> list[str]:
    """`size` distinct leaf codes, chapters weighted like principal diagnoses, in frequency-rank order."""
    pools = _candidates_by_chapter()
    total = sum(len(pool) for pool in pools.values())
    if size < 1 or size > total:
        raise UserError(f"the code vocabulary must hold between 1 and {total} codes, not {size}")
    chapters = sorted(pools)
    weights = [phrases.FIRST_CODE_CHAPTER_WEIGHTS[number] for number in chapters]
    chosen: dict[str, None] = {}
    while len(chosen) < size:
        number = rng.choices(chapters, weights)[0]
        chosen.setdefault(rng.choice(pools[number]))
    return list(chosen)


def choose_grouped_vocabulary(rng: random.Random, size: int, per_category: int, per_chapter: int) -> list[str]:
    """`size` leaf codes in clusters: `per_chapter` categories of each drawn chapter, `per_category` codes each.

    Independent draws (`choose_vocabulary`) give about one code per category and
    one category per chapter at demo sizes, so chapter, category and full-code
    F1 measure the same thing. Clusters make the levels differ: a model may know
    the chapter yet miss the category, or the category yet miss the code.
    Chapters are drawn without replacement, weighted like principal diagnoses;
    the codes are shuffled before they get their frequency ranks, so the head
    of the long tail is not one chapter.
    """
    if per_category < 1 or per_chapter < 1:
        raise UserError("codes per category and categories per chapter must be at least 1")
    by_chapter: dict[int, list[list[str]]] = {}
    for number, pool in _candidates_by_chapter().items():
        categories: dict[str, list[str]] = {}
        for code in pool:
            categories.setdefault(code[:3], []).append(code)
        usable = [codes for _, codes in sorted(categories.items()) if len(codes) >= per_category]
        if len(usable) >= per_chapter:
            by_chapter[number] = usable
    chapters = sorted(by_chapter)
    capacity = len(chapters) * per_chapter * per_category
    if size < 1 or size > capacity:
        raise UserError(f"a vocabulary of {per_category} codes per category and {per_chapter} categories per chapter "
                         f"holds between 1 and {capacity} codes, not {size}")
    weights = [phrases.FIRST_CODE_CHAPTER_WEIGHTS[number] for number in chapters]
    chosen: list[str] = []
    while len(chosen) < size:
        index = rng.choices(range(len(chapters)), weights)[0]
        number = chapters.pop(index)
        weights.pop(index)
        for category in rng.sample(by_chapter[number], per_chapter):
            chosen.extend(rng.sample(category, per_category))
    chosen = chosen[:size]
    rng.shuffle(chosen)
    return chosen


def default_vocabulary(admissions: int) -> int:
    """About 15 admissions per distinct first code, as in the paper (93k notes, 6,369 codes), at most 6,400."""
    return max(1, min(PAPER_VOCABULARY, admissions // 15))


def zipf_weights(size: int) -> list[float]:
    """Long-tailed frequencies by rank (Zipf-Mandelbrot), summing to one."""
    raw = [1.0 / (rank + ZIPF_SHIFT) ** ZIPF_EXPONENT for rank in range(1, size + 1)]
    total = sum(raw)
    return [value / total for value in raw]


def cumulative(weights: list[float]) -> list[float]:
    """Running sums for `bisect.bisect_right` sampling; the last is exactly 1 so every draw lands."""
    sums = list(itertools.accumulate(weights))
    sums[-1] = 1.0
    return sums
