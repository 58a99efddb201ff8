"""The judge prompt: rate how well a reasoning trace justifies the code it predicts.

DeepICD-R1 adds an LLM judge's 1-5 rating of the reasoning to the reward. The
judge sees the admission note, the *predicted* code (never the gold one, so it
rates justification rather than correctness against a hidden answer), the
trace, what the classification says about that code, and the coding guideline
of its chapter. The paper's code descriptions came from a health portal we
cannot use; the ICD-10-CM tabular text of the code and its ancestors stands in.

The answer format is part of this contract, so the parser lives here too:
`{"score": n}` with n in 1..5, or, leniently, a lone digit. Bump `VERSION`
whenever the wording changes: it is part of every cache key, so cached ratings
of an old prompt are never reused for a new one.
"""

from __future__ import annotations

import json
import re

VERSION = "judge-v1"
MIN_SCORE, MAX_SCORE = 1, 5

SYSTEM = (
    "You review the reasoning of a clinical coding assistant. The assistant read a hospital admission "
    "note, reasoned about it, and proposed one ICD-10-CM code as the primary discharge diagnosis. "
    "Judge the reasoning itself: whether it is clinically sound, whether it ties concrete findings from "
    "the note (complaint, history, examination, results) to the proposed diagnosis, and whether the "
    "chosen code fits that diagnosis according to the classification and the coding guideline. "
    "Use this scale:\n"
    "5 = excellent: clinically sound, findings clearly and specifically linked to the diagnosis, code well chosen\n"
    "4 = good: sound, with minor gaps in the linkage or in code specificity\n"
    "3 = fair: plausible but thin, generic or partly unsupported by the note\n"
    "2 = poor: major clinical errors or weak support for the diagnosis\n"
    "1 = very poor: wrong, contradicted by the note, or unjustified\n"
    'Answer with a JSON object and nothing else, for example {"score": 3}.'
)

USER = (
    "Admission note:\n{note}\n\n"
    "Proposed ICD-10-CM code: {code}\n\n"
    "What the ICD-10-CM tabular list says about this code and its parent levels:\n{code_text}\n\n"
    "Coding guideline for the code's chapter:\n{guideline}\n\n"
    "Reasoning to rate:\n{trace}\n\n"
    'Rate the reasoning from 1 to 5. Reply only with {{"score": n}}.'
)

# Plain-text form for servers driven through the completions API (no chat template).
COMPLETION_SUFFIX = "\n\nAnswer:"

_NONE = "(none available)"


def user_message(note: str, code: str, trace: str, code_text: str, guideline: str) -> str:
    return USER.format(
        note=note.strip(),
        code=code,
        code_text=code_text.strip() or _NONE,
        guideline=guideline.strip() or _NONE,
        trace=trace.strip(),
    )


def messages(note: str, code: str, trace: str, code_text: str, guideline: str) -> list[dict[str, str]]:
    """Chat messages (system + user) asking for a 1-5 rating of `trace` for predicted `code`."""
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": user_message(note, code, trace, code_text, guideline)},
    ]


def completion_prompt(note: str, code: str, trace: str, code_text: str, guideline: str) -> str:
    """The same request as one plain-text prompt, for the completions API."""
    return f"{SYSTEM}\n\n{user_message(note, code, trace, code_text, guideline)}{COMPLETION_SUFFIX}"


_THINK_END = re.compile(r"</think>", re.IGNORECASE)
_OBJECT = re.compile(r"\{[^{}]*\}")
_SCORE_FIELD = re.compile(r"""["']?score["']?\s*[:=]\s*["']?(-?\d+(?:\.\d+)?)""", re.IGNORECASE)
_LONE_DIGIT = re.compile(r"\s*([0-9])\s*\.?\s*")


def _as_score(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if isinstance(value, (int, float)) and float(value).is_integer():
        score = int(value)
        return score if MIN_SCORE <= score <= MAX_SCORE else None
    return None


def parse_score(text: str | None) -> int | None:
    """The 1-5 score of a judge reply, or None when it has none (or one out of range).

    Accepted, in order: a JSON object with a "score" key (anywhere in the reply,
    e.g. inside a code fence), a `score: n` field in looser syntax, or a reply
    that is a lone digit. Reasoning models' `<think>` sections are skipped. The
    first score found decides: a reply whose score is out of range is not
    rescued by a later number.
    """
    if not text:
        return None
    parts = _THINK_END.split(text)
    answer = parts[-1]
    for candidate in _OBJECT.findall(answer):
        try:
            data = json.loads(candidate)
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict):
            for key, value in data.items():
                if str(key).strip().lower() == "score":
                    return _as_score(value)
    field = _SCORE_FIELD.search(answer)
    if field:
        return _as_score(field.group(1))
    lone = _LONE_DIGIT.fullmatch(answer)
    if lone:
        return _as_score(lone.group(1))
    return None
