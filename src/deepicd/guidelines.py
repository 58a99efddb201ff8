"""Chapter excerpts of the ICD-10-CM coding guidelines, as plain text for prompts.

The judge (and the distillation oracle) show a model the guideline text of the
predicted code's chapter, as DeepICD-R1 did. The guidelines come as one JSON
file per chapter, `chapter_<n>.json`, in the format of the DeepICD-R1 release:
nested objects whose keys are headings and whose leaves are text (or lists of
text). Users point at their own folder in that format.

Some chapters have no file (the release lacks 3, 8, 11 and 22). For those, and
when no folder is given at all, the excerpt is built from the official tabular
list instead: the chapter's title, inclusion terms and notes, and its blocks.
That text is thinner than a guideline but always available, so a prompt never
has a hole where the guideline should be. Because that fallback changes what a
judge sees, `source` names where the excerpts come from, for run manifests.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

from deepicd import icd
from deepicd.errors import UserError

DEFAULT_MAX_CHARS = 4000
TABULAR_FALLBACK = "tabular-fallback"
_FILE_PATTERN = re.compile(r"chapter_(\d+)\.json")
_TRUNCATED = " [...]"


class GuidelineError(UserError, ValueError):
    """A guideline folder or file that cannot be read; the message names the path."""


def flatten(node: object, depth: int = 0) -> list[str]:
    """Nested headings -> text, as indented lines: headings end with a colon, lists become bullets.

    A key named `description` holds the text of its parent heading, so it is
    written without a heading of its own.
    """
    indent = "  " * depth
    if isinstance(node, str):
        text = " ".join(node.split())
        return [f"{indent}{text}"] if text else []
    if isinstance(node, (list, tuple)):
        lines = []
        for item in node:
            inner = flatten(item, depth)
            if inner:
                inner[0] = f"{indent}- {inner[0].lstrip()}"
            lines.extend(inner)
        return lines
    if isinstance(node, dict):
        lines = []
        for key, value in node.items():
            heading = " ".join(str(key).split())
            if heading.lower() == "description":
                lines.extend(flatten(value, depth))
            elif isinstance(value, str):
                text = " ".join(value.split())
                lines.append(f"{indent}{heading}: {text}" if text else f"{indent}{heading}")
            else:
                lines.append(f"{indent}{heading}:")
                lines.extend(flatten(value, depth + 1))
        return lines
    if node is None:
        return []
    return [f"{indent}{node}"]


def truncate(text: str, max_chars: int) -> str:
    """Cut `text` to at most `max_chars` characters, at a word boundary, marking the cut."""
    if max_chars <= 0 or len(text) <= max_chars:
        return text
    room = max(max_chars - len(_TRUNCATED), 0)
    cut = text[:room]
    space = max(cut.rfind(" "), cut.rfind("\n"))
    if space > room // 2:
        cut = cut[:space]
    return cut.rstrip() + _TRUNCATED


def available_chapters(folder: str | Path) -> list[int]:
    """Chapter numbers that have a `chapter_<n>.json` file in `folder`."""
    path = Path(folder)
    if not path.is_dir():
        raise GuidelineError(f"guidelines folder not found: {path}")
    numbers = []
    for file in path.iterdir():
        match = _FILE_PATTERN.fullmatch(file.name)
        if match:
            numbers.append(int(match.group(1)))
    return sorted(numbers)


def source(folder: str | Path | None) -> str:
    """Where chapter excerpts come from: 'files:<absolute folder>' or 'tabular-fallback'.

    A run's manifest should carry this: ratings from a judge that saw the coding
    guidelines and from one that saw only the tabular chapter notes are not
    comparable. A folder without any chapter file counts as the fallback.
    """
    if not folder:
        return TABULAR_FALLBACK
    path = Path(folder).expanduser()
    if not path.is_dir() or not available_chapters(path):
        return TABULAR_FALLBACK
    return f"files:{path.resolve()}"


@lru_cache(maxsize=256)
def _read_chapter_file(path: str) -> str:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise GuidelineError(f"{path} is not valid JSON: {exc}") from exc
    except OSError as exc:
        raise GuidelineError(f"cannot read guideline file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise GuidelineError(f"{path} must hold a JSON object of headings, not {type(data).__name__}")
    return "\n".join(flatten(data))


@lru_cache(maxsize=None)
def _first_category(number: int) -> str | None:
    for cat in icd.categories():
        found = icd.chapter(cat)
        if found is not None and found.number == number:
            return cat
    return None


@lru_cache(maxsize=None)
def tabular_chapter_text(number: int) -> str:
    """The tabular list's own text for a chapter: title, inclusion terms, notes and blocks."""
    chapter = next((c for c in icd.chapters() if c.number == number), None)
    if chapter is None:
        return ""
    lines = [f"Chapter {chapter.number} ({chapter.roman}): {chapter.title} ({chapter.range})"]
    first = _first_category(number)
    entries = icd.tabular_entries(first) if first else []
    head = entries[-1] if entries and entries[-1].code == str(number) else None
    if head is not None:
        lines.extend(f"Includes: {term}" for term in head.inclusion_terms)
        lines.extend(f"Note: {note}" for note in head.notes)
    blocks: dict[str, None] = {}
    for cat in icd.categories():
        found = icd.chapter(cat)
        if found is not None and found.number == number:
            block = icd.block(cat)
            if block:
                blocks.setdefault(block)
    if blocks:
        lines.append("Blocks:")
        lines.extend(f"- {icd.description(block) or block}" for block in blocks)
    return "\n".join(lines)


def chapter_excerpt(number: int, folder: str | Path | None = None, max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """Plain-text guideline excerpt for chapter `number`, at most `max_chars` long (0: no limit).

    Read from `folder`/chapter_<number>.json when that file exists; otherwise the
    chapter's tabular notes. A folder that does not exist is an error: a typo
    there would otherwise silently degrade every prompt.
    """
    if folder:
        path = Path(folder)
        if not path.is_dir():
            raise GuidelineError(f"guidelines folder not found: {path}")
        file = path / f"chapter_{number}.json"
        if file.is_file():
            return truncate(_read_chapter_file(str(file.resolve())), max_chars)
    return truncate(tabular_chapter_text(number), max_chars)


def code_excerpt(code: str, folder: str | Path | None = None, max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """The guideline excerpt of the chapter a code belongs to ('' for a code that fits no chapter)."""
    chapter = icd.chapter(code)
    if chapter is None:
        return ""
    return chapter_excerpt(chapter.number, folder, max_chars)
