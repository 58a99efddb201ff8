"""A completion read the way every reward term and the evaluation read it.

Parsing happens once per completion; terms only look at the result. The
prediction is the first pair's diagnosis, stripped and without dots, case kept
(the published pattern is case-sensitive).
"""

from __future__ import annotations

from typing import NamedTuple

from deepicd import icd
from deepicd.rewards.parse import Pair, find_pairs


class ParsedCompletion(NamedTuple):
    """What the reward terms and the evaluation need to know about one completion."""

    raw: str  # the completion as generated, without the prefill
    pairs: tuple[Pair, ...]
    prediction: str | None  # the first pair's code, normalised; None without a pair
    trace: str | None  # the first pair's think text; None without a think block
    valid: bool  # a prediction that passes the code pattern chosen at parse time

    @property
    def first(self) -> Pair | None:
        return self.pairs[0] if self.pairs else None

    def is_valid(self, paper_pattern: bool = False) -> bool:
        """Validity under either code pattern, whichever was used when parsing."""
        return bool(self.prediction) and icd.is_well_formed(self.prediction, paper_pattern=paper_pattern)


def parse_completion(completion: str, prefill: str = "<think>", paper_pattern: bool = False) -> ParsedCompletion:
    """Parse a completion generated after `prefill`; the prefill is put back in front first."""
    pairs = tuple(find_pairs(prefill + completion))
    if not pairs:
        return ParsedCompletion(completion, pairs, None, None, False)
    first = pairs[0]
    prediction = icd.normalize(first.diagnosis)
    valid = bool(prediction) and icd.is_well_formed(prediction, paper_pattern=paper_pattern)
    return ParsedCompletion(completion, pairs, prediction, first.think, valid)


def normalize_gold(gold: object) -> str:
    """The gold code from a string, or the first element of a list/tuple/array (VERL stores a list).

    The published scorer silently degraded to a first-letter check when handed a
    bare string; accepting both shapes removes that trap.
    """
    if isinstance(gold, str):
        return icd.normalize(gold)
    try:
        items = list(gold)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"gold must be a code or a list of codes, got {type(gold).__name__}") from None
    if not items:
        raise ValueError("gold is an empty list")
    return icd.normalize(items[0])
