"""ICD-10-CM semantics: normalisation, validity, hierarchy and tabular text.

Everything here is read from the official code set shipped by `simple-icd-10-cm`
(April 2026 release) rather than from hand-written tables, so chapter ranges,
the letter-in-third-position categories and descriptions follow the release.

MIMIC-IV stores codes without the dot and space-padded to seven characters, and
it holds codes retired since 2015-2019. Every function therefore accepts any
string: a well-formed code that the release does not know is *reported*
(`exists` is False, `description` is None) and still gets its category and
chapter from its first three characters; nothing here raises on a code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import simple_icd_10_cm as _ontology

# The pattern of the published reward and evaluation code: a letter, two
# digits, up to four more letters or digits, case-sensitive, no dot.
PAPER_CODE_PATTERN = re.compile(r"[A-Z][0-9]{2}[A-Z0-9]{0,4}")
# Tail of a code whose category the published pattern rejects (C4A, O9A, QA0, ...).
_TAIL_PATTERN = re.compile(r"[A-Z0-9]{0,4}")
_CHAPTER_RANGE = re.compile(r"\(([A-Z][0-9A-Z]{2})-([A-Z][0-9A-Z]{2})\)\s*$")


@dataclass(frozen=True)
class Chapter:
    """One of the 22 ICD-10-CM chapters."""

    number: int
    roman: str
    title: str
    first: str  # first category of the chapter's range, e.g. "A00"
    last: str  # last category of the range, e.g. "B99"

    @property
    def range(self) -> str:
        return f"{self.first}-{self.last}"


def normalize(code: object) -> str:
    """Strip whitespace (MIMIC pads codes to seven characters) and drop dots.

    Case is kept on purpose: the published pattern is case-sensitive, so a
    lower-case answer stays invalid, as it was in the paper's runs.
    """
    if code is None:
        return ""
    return str(code).strip().replace(".", "")


def is_well_formed(code: str, *, paper_pattern: bool = False) -> bool:
    """Syntactic validity of a normalised code.

    With `paper_pattern=True` this is exactly the published check, which wrongly
    rejects real categories with a letter in third position (C4A, M1A, O9A, ...)
    and, since the 2026 releases, in second position (QA0). By default every
    category of the release is accepted, with up to four more characters.
    """
    if PAPER_CODE_PATTERN.fullmatch(code):
        return True
    if paper_pattern:
        return False
    return code[:3] in irregular_categories() and bool(_TAIL_PATTERN.fullmatch(code[3:]))


@lru_cache(maxsize=1)
def irregular_categories() -> frozenset[str]:
    """Categories of the release that the published pattern rejects: a letter in second or third position."""
    return frozenset(
        code
        for code in _all_codes()
        if len(code) == 3 and not PAPER_CODE_PATTERN.fullmatch(code) and _ontology.is_category(code)
    )


@lru_cache(maxsize=1)
def _all_codes() -> frozenset[str]:
    return frozenset(_ontology.get_all_codes(False))


def exists(code: str) -> bool:
    """True if the code (any level: chapter number, block, category, subcategory) is in the release."""
    return normalize(code) in _all_codes()


def is_billable(code: str) -> bool:
    """True for a leaf code of the release (the most specific level)."""
    code = normalize(code)
    return code in _all_codes() and _ontology.is_leaf(code)


@lru_cache(maxsize=1)
def leaf_codes() -> tuple[str, ...]:
    """All most-specific codes of the release, sorted, without dots."""
    return tuple(sorted(c for c in _all_codes() if _ontology.is_category_or_subcategory(c) and _ontology.is_leaf(c)))


@lru_cache(maxsize=1)
def categories() -> tuple[str, ...]:
    """All three-character categories of the release, sorted."""
    return tuple(sorted(c for c in _all_codes() if len(c) == 3 and _ontology.is_category(c)))


def category(code: str) -> str:
    """The three-character category of a code (its first three characters)."""
    return normalize(code)[:3]


def _roman(number: int) -> str:
    numerals = ((10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I"))
    out = []
    for value, letters in numerals:
        while number >= value:
            out.append(letters)
            number -= value
    return "".join(out)


@lru_cache(maxsize=1)
def chapters() -> tuple[Chapter, ...]:
    """The chapters of the release, in order, with their category ranges."""
    result = []
    for number in range(1, 100):
        key = str(number)
        if key not in _all_codes() or not _ontology.is_chapter(key):
            break
        description = _ontology.get_description(key)
        match = _CHAPTER_RANGE.search(description)
        if match is None:  # pragma: no cover - guards against a changed release format
            raise RuntimeError(f"cannot read the category range of ICD-10-CM chapter {key}: {description!r}")
        title = description[: match.start()].strip()
        result.append(Chapter(number, _roman(number), title, match.group(1), match.group(2)))
    return tuple(result)


def chapter(code: str) -> Chapter | None:
    """The chapter a code belongs to, from its category; None if it fits no chapter range.

    Works for retired codes too, since only the first three characters matter.
    Ranges are compared as strings, which orders digits before letters exactly as
    the classification does (C49 < C4A < C50).
    """
    cat = category(code)
    if len(cat) != 3 or not is_well_formed(cat):
        return None
    return _chapter_of_category(cat)


@lru_cache(maxsize=None)
def _chapter_of_category(cat: str) -> Chapter | None:
    for candidate in chapters():
        if candidate.first <= cat <= candidate.last:
            return candidate
    return None


def block(code: str) -> str | None:
    """The block (e.g. "M50-M54") a known code or its category belongs to."""
    for ancestor in ancestors(code):
        if "-" in ancestor:
            return ancestor
    return None


def nearest_known(code: str) -> str | None:
    """The code itself if the release knows it, else its longest known prefix of at least 3 characters."""
    code = normalize(code)
    for end in range(len(code), 2, -1):
        if code[:end] in _all_codes():
            return code[:end]
    return None


def ancestors(code: str) -> list[str]:
    """Ancestors of the nearest known form of a code, most specific first, chapter number last."""
    known = nearest_known(code)
    if known is None:
        return []
    chain = [] if known == normalize(code) else [known]
    return chain + [a.replace(".", "") for a in _ontology.get_ancestors(known)]


def description(code: str) -> str | None:
    """The release's description of the code, or None for a code the release does not know."""
    code = normalize(code)
    if code not in _all_codes():
        return None
    return _ontology.get_description(code)


@dataclass(frozen=True)
class TabularEntry:
    """What the tabular list says about one code of the hierarchy."""

    code: str
    description: str
    inclusion_terms: tuple[str, ...]
    notes: tuple[str, ...]


def _as_list(value: object) -> list[str]:
    """The ontology returns some fields as a list and others as one string; make both a list."""
    items = [value] if isinstance(value, str) else [str(item) for item in value]
    flat = [" ".join(item.split()) for item in items]
    return [item for item in flat if item]


def _entry(code: str) -> TabularEntry:
    notes = (
        _as_list(_ontology.get_notes(code))
        + [f"Code first: {text}" for text in _as_list(_ontology.get_code_first(code))]
        + [f"Code also: {text}" for text in _as_list(_ontology.get_code_also(code))]
        + [f"Use additional code: {text}" for text in _as_list(_ontology.get_use_additional_code(code))]
    )
    inclusions = _as_list(_ontology.get_inclusion_term(code)) + _as_list(_ontology.get_includes(code))
    return TabularEntry(
        code=code,
        description=_ontology.get_description(code),
        inclusion_terms=tuple(inclusions),
        notes=tuple(notes),
    )


def tabular_entries(code: str) -> list[TabularEntry]:
    """Tabular text of the code (or its nearest known prefix) and each ancestor, most specific first."""
    known = nearest_known(code)
    if known is None:
        return []
    return [_entry(c) for c in [known] + [a.replace(".", "") for a in _ontology.get_ancestors(known)]]


def tabular_text(code: str) -> str:
    """A plain-text summary of a code's tabular entries and its ancestors', for prompts.

    Used in place of the consumer-health descriptions of the paper, which are not
    available: description, inclusion terms and notes, most specific level first.
    """
    lines = []
    code = normalize(code)
    if description(code) is None:
        lines.append(f"{code}: not in the ICD-10-CM release used here (retired or unknown code).")
    for entry in tabular_entries(code):
        lines.append(f"{entry.code}: {entry.description}")
        lines.extend(f"  - includes: {term}" for term in entry.inclusion_terms)
        lines.extend(f"  - note: {note}" for note in entry.notes)
    return "\n".join(lines)
