"""The ICD-10-CM release as preprocessing needs it: chapters, categories and descriptions of target codes.

Parsing the release (`simple-icd-10-cm`) costs about two seconds of CPU and a
couple of hundred MB, as much as reading a 30k-admission MIMIC extract. This
module imports nothing heavy at import time, so `OntologyService` can run it in
a small side process that starts parsing at once and overlaps with the table
streaming; the main process then never loads the release.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

_TIMEOUT_S = 600  # loading the release takes seconds; anything longer means the side process is stuck


@dataclass(frozen=True)
class CodeInfo:
    """What the label files say about a target code, from the ICD-10-CM release."""

    chapter: int | None
    chapter_roman: str
    chapter_title: str
    category: str
    description: str
    in_release: bool


@dataclass(frozen=True)
class Ontology:
    """The answers a preprocessing run needs from the release: its chapters and its view of some codes."""

    chapters: tuple[tuple[int, str, str], ...]  # (number, roman numeral, title)
    codes: dict[str, CodeInfo]


def describe(codes: Iterable[str]) -> Ontology:
    """Chapter, category and description of each code (retired codes keep their category and chapter)."""
    from deepicd import icd

    infos = {}
    for code in codes:
        chapter = icd.chapter(code)
        description = icd.description(code)
        infos[code] = CodeInfo(
            chapter.number if chapter else None, chapter.roman if chapter else "", chapter.title if chapter else "",
            icd.category(code), description or "", description is not None,
        )
    return Ontology(tuple((c.number, c.roman, c.title) for c in icd.chapters()), infos)


def _to_json(ontology: Ontology) -> str:
    codes = {code: [i.chapter, i.chapter_roman, i.chapter_title, i.category, i.description, i.in_release]
             for code, i in ontology.codes.items()}
    return json.dumps({"chapters": ontology.chapters, "codes": codes})


def _from_json(text: str) -> Ontology:
    data = json.loads(text)
    return Ontology(
        tuple(tuple(chapter) for chapter in data["chapters"]),
        {code: CodeInfo(*values) for code, values in data["codes"].items()},
    )


def serve() -> None:
    """The side process: load the release at once, then answer one JSON list of codes read from stdin."""
    from deepicd import icd

    icd.chapters()
    codes = json.loads(sys.stdin.read())
    sys.stdout.write(_to_json(describe(codes)))


class OntologyService:
    """Answers `describe` from a side process that starts loading the ICD-10-CM release at once.

    The side process is a fresh interpreter (`python -c`), talking JSON over its
    stdin and stdout, so nothing of the calling program is re-run in it. When it
    cannot be started, fails or is killed, `describe` answers in this process.
    """

    def __init__(self, background: bool = True):
        self._process: subprocess.Popen | None = None
        if background:
            package_root = str(Path(__file__).resolve().parents[2])  # the folder holding deepicd/
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
            try:
                self._process = subprocess.Popen(
                    [sys.executable, "-c", "from deepicd.mimic.ontology import serve; serve()"],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                    encoding="utf-8", env=env,
                )
            except OSError:
                self._process = None

    def describe(self, codes: Iterable[str]) -> Ontology:
        codes = sorted(set(codes))
        if self._process is not None:
            try:
                answer, _ = self._process.communicate(json.dumps(codes), timeout=_TIMEOUT_S)
                if self._process.returncode == 0:
                    return _from_json(answer)
            except (OSError, ValueError, KeyError, TypeError, subprocess.TimeoutExpired):
                pass  # a broken side process must not fail the run: answer here instead
            finally:
                self.close()
        return describe(codes)

    def close(self) -> None:
        if self._process is not None:
            if self._process.poll() is None:
                self._process.kill()
            self._process.communicate()
            self._process = None

    def __enter__(self) -> "OntologyService":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
