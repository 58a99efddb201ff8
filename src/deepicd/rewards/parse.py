"""Linear-time parser for `<think>…</think> <diagnosis>…</diagnosis>` pairs.

The published reward finds pairs with one regular expression (multiline `^`,
nested `\\s*`, tempered dots). It is correct but backtracks catastrophically:
27.8 s for 12,750 characters of blank lines, and a policy under GRPO produces
exactly such degenerate text. This parser returns the same pairs as that
expression (the test suite checks it against the expression on random inputs)
in O(n log n) for any input:

* every tag position is found in one scan of the text;
* a pair can only begin at the first non-whitespace character after a line
  start, and all line starts inside one whitespace run lead to the same
  character, so each run is looked at once;
* a block's body ends at the next tag of its own kind, found by bisection.

Semantics kept from the published expression: a pair is an optional think block,
optional whitespace, then a diagnosis block; it must begin at a line start after
optional whitespace; block bodies may span lines but may not contain a tag of
their own kind; pairs are found left to right without overlap.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from typing import NamedTuple

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
DIAG_OPEN, DIAG_CLOSE = "<diagnosis>", "</diagnosis>"

_NON_SPACE = re.compile(r"\S")


class Pair(NamedTuple):
    """One think/diagnosis pair. `think` is None when the pair has no think block."""

    think: str | None
    diagnosis: str
    start: int
    end: int


_ANY_TAG = re.compile(r"</?(?:think|diagnosis)>")
# The shape of nearly every completion: one think block and one diagnosis, no other
# "<". Anchored, and each quantifier stops at a "<" it cannot consume, so it is linear.
_SINGLE_PAIR = re.compile(r"\s*<think>([^<]*)</think>\s*<diagnosis>([^<]*)</diagnosis>\s*\Z")


class _TagIndex:
    """Positions of the opening and closing tags of one kind, for next-tag look-ups."""

    __slots__ = ("positions", "is_close")

    def __init__(self) -> None:
        self.positions: list[int] = []
        self.is_close: list[bool] = []

    def closing_after(self, index: int) -> int:
        """Position of the closing tag ending a body that starts at `index`, or -1.

        The body runs to the next tag of this kind; it is a block only if that tag closes.
        """
        at = bisect_left(self.positions, index)
        if at == len(self.positions) or not self.is_close[at]:
            return -1
        return self.positions[at]


def _index_tags(text: str) -> tuple[_TagIndex, _TagIndex]:
    """One pass over the text collecting every think and diagnosis tag."""
    thinks, diags = _TagIndex(), _TagIndex()
    for match in _ANY_TAG.finditer(text):
        tag = match.group()
        index = thinks if tag.endswith("think>") else diags
        index.positions.append(match.start())
        index.is_close.append(tag[1] == "/")
    return thinks, diags


def _skip_space(text: str, index: int) -> int:
    match = _NON_SPACE.search(text, index)
    return match.start() if match else len(text)


def _match_at(text: str, q: int, thinks: _TagIndex, diags: _TagIndex) -> tuple[str | None, str, int] | None:
    """Match one pair whose first tag starts at `q`: (think, diagnosis, end) or None."""
    think = None
    if text.startswith(THINK_OPEN, q):
        body = q + len(THINK_OPEN)
        close = thinks.closing_after(body)
        if close < 0:
            return None
        think = text[body:close]
        q = _skip_space(text, close + len(THINK_CLOSE))
    if not text.startswith(DIAG_OPEN, q):
        return None
    body = q + len(DIAG_OPEN)
    close = diags.closing_after(body)
    if close < 0:
        return None
    return think, text[body:close], close + len(DIAG_CLOSE)


def find_pairs(text: str, limit: int | None = None) -> list[Pair]:
    """All pairs of `text`, left to right, non-overlapping (at most `limit` if given)."""
    simple = _SINGLE_PAIR.match(text)
    if simple is not None:
        return [Pair(simple.group(1), simple.group(2), 0, simple.end(2) + len(DIAG_CLOSE))]
    thinks, diags = _index_tags(text)
    if not any(diags.is_close):  # no pair can exist
        return []
    pairs: list[Pair] = []
    line_start = 0
    n = len(text)
    while line_start <= n:
        q = _skip_space(text, line_start)
        if q >= n:
            break
        found = _match_at(text, q, thinks, diags)
        if found is not None:
            think, diagnosis, end = found
            pairs.append(Pair(think, diagnosis, line_start, end))
            if limit is not None and len(pairs) >= limit:
                break
            resume = end
        else:
            # Every line start up to q led here and failed the same way: move past q.
            resume = q + 1
        newline = text.find("\n", resume)
        if newline < 0:
            break
        line_start = newline + 1
    return pairs


def count_pairs(text: str) -> int:
    return len(find_pairs(text))
