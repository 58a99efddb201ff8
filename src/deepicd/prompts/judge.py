"""The judge prompts: rate how well a reasoning trace justifies the code it predicts.

DeepICD-R1 adds an LLM judge's 1-5 rating of the reasoning to the reward. The
judge sees the admission note, the *predicted* code (never the gold one, so it
rates justification rather than correctness against a hidden answer), the
trace, what the classification says about that code, and the coding guideline
of its chapter. The paper's code descriptions came from a health portal we
cannot use; the ICD-10-CM tabular text of the code and its ancestors stands in.

Two rubrics share that layout (`judge.rubric`):

* `paper` follows the published judge: it rates the reasoning *given* the
  predicted diagnosis, on clinical soundness and on how well it links the
  note's findings to that diagnosis;
* `extended` also asks whether the code itself is well chosen and specific,
  which makes the rating overlap with the outcome term; it is the rubric of the
  `judge-greedy` preset.

The answer format is part of this contract, so the parsers live here too
(`judge.score_parser`):

* `lenient`: `{"score": n}` anywhere in the reply, a looser `score: n`, or a
  lone digit; n must be an integer in 1..5;
* `paper`: the published reading, the first `{...}` of the reply decoded as
  JSON and its `score` taken as it is (4.5, 7 and 0 included).

Each rubric has its own version string, part of every cache key, so cached
ratings of one wording are never reused for another. Bump it whenever a
rubric's wording changes.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

from deepicd.errors import ConfigError

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

PAPER_SYSTEM = (
    "You assess clinical reasoning for a reinforcement learning pipeline. The reasoning you assess comes "
    "from a model that learns to code hospital admissions: it reads an admission note (a MIMIC-IV "
    "discharge summary reduced to what is known when the patient is admitted), writes its reasoning, and "
    "then names one ICD-10-CM code as its diagnosis. You rate the reasoning, taking the predicted diagnosis "
    "and the admission note as given. Where available you also receive what the classification says about "
    "the predicted code and the coding guideline of its chapter: use the first to check the reasoning "
    "against established facts, and the second to check whether the diagnosis applies to this note. "
    "Your rating reflects how clinically valid, relevant and thorough the reasoning behind the diagnosis is."
)

PAPER_USER = (
    "Rate the reasoning below, written for the predicted ICD-10-CM code, against the admission note.\n\n"
    "Admission note:\n{note}\n\n"
    "Predicted ICD-10-CM code: {code}\n\n"
    "Reasoning:\n{trace}\n\n"
    "Background for checking the reasoning.\n"
    "What the ICD-10-CM tabular list says about this code and its parent levels:\n{code_text}\n\n"
    "Coding guideline for the code's chapter:\n{guideline}\n\n"
    "Rate the reasoning on this scale:\n"
    "5 = excellent: clinically sound and thorough, consistent with established medical knowledge, and "
    "strongly linking the findings and history in the note to the diagnosis\n"
    "4 = good: largely correct, with small omissions or somewhat weaker links; still medically plausible\n"
    "3 = adequate: reasoning is present but oversimplified, unclear in places, or with gaps in its link "
    "to the note\n"
    "2 = poor: flawed clinical reasoning or unsupported assumptions; important details missed or misread\n"
    "1 = very poor: wrong or missing reasoning, or a diagnosis the note does not support\n"
    "What counts is whether the reasoning connects the admission note to the diagnosis in a logical, "
    "medically grounded way. Do not explain your rating. "
    'Answer only with a JSON object of the form {{"score": n}}, where n is the score from 1 to 5.'
)


@dataclass(frozen=True)
class Rubric:
    """One judge prompt: its wording and the version string that keys its cached ratings."""

    name: str
    version: str
    system: str
    user: str


RUBRICS = {
    "extended": Rubric("extended", "judge-v1", SYSTEM, USER),
    "paper": Rubric("paper", "judge-paper-v1", PAPER_SYSTEM, PAPER_USER),
}
DEFAULT_RUBRIC = "extended"
VERSION = RUBRICS[DEFAULT_RUBRIC].version

# Plain-text form for servers driven through the completions API without a chat template.
COMPLETION_SUFFIX = "\n\nAnswer:"

_NONE = "(none available)"


def rubric(name: str) -> Rubric:
    """The rubric called `name`; ValueError naming the known ones otherwise."""
    try:
        return RUBRICS[name]
    except KeyError:
        raise ConfigError(f"unknown judge rubric {name!r}; known: {sorted(RUBRICS)}") from None


def user_message(
    note: str, code: str, trace: str, code_text: str, guideline: str, rubric_name: str = DEFAULT_RUBRIC
) -> str:
    return rubric(rubric_name).user.format(
        note=note.strip(),
        code=code,
        code_text=code_text.strip() or _NONE,
        guideline=guideline.strip() or _NONE,
        trace=trace.strip(),
    )


def messages(
    note: str, code: str, trace: str, code_text: str, guideline: str, rubric_name: str = DEFAULT_RUBRIC
) -> list[dict[str, str]]:
    """Chat messages (system + user) asking for a 1-5 rating of `trace` for predicted `code`."""
    return [
        {"role": "system", "content": rubric(rubric_name).system},
        {"role": "user", "content": user_message(note, code, trace, code_text, guideline, rubric_name)},
    ]


def plain_prompt(chat: list[dict[str, str]]) -> str:
    """Chat messages as one plain text, for a completions server when no chat template is configured."""
    return "\n\n".join(message["content"] for message in chat) + COMPLETION_SUFFIX


def completion_prompt(
    note: str, code: str, trace: str, code_text: str, guideline: str, rubric_name: str = DEFAULT_RUBRIC
) -> str:
    """The same request as one plain-text prompt, for the completions API."""
    return plain_prompt(messages(note, code, trace, code_text, guideline, rubric_name))


_THINK_END = re.compile(r"</think>", re.IGNORECASE)
_OBJECT = re.compile(r"\{[^{}]*\}")
_SCORE_FIELD = re.compile(r"""["']?score["']?\s*[:=]\s*["']?(-?\d+(?:\.\d+)?)""", re.IGNORECASE)
_LONE_DIGIT = re.compile(r"\s*([0-9])\s*\.?\s*")
# From the first "{" to the first "}" after it: the span the published judge decodes.
_FIRST_OBJECT = re.compile(r"\{[^}]*\}")


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


def _as_number(value: object) -> int | float | None:
    """A JSON value the published code could multiply by its scale, or None.

    JSON `true`/`false` are Python ints there, so they count 1 and 0. Text,
    null, objects and lists made the published code raise, and a non-finite or
    overflowing number would make the reward NaN or infinite: all of them are
    None here, so the row gets the unparsed value instead.
    """
    if isinstance(value, bool):
        return int(value)
    if not isinstance(value, (int, float)):
        return None
    try:
        finite = math.isfinite(float(value))
    except OverflowError:
        return None
    return value if finite else None


def parse_score_paper(text: str | None) -> int | float | None:
    """The score as the published judge reads it: JSON of the first `{...}`, its "score" as it is.

    `{"score": 4.5}` gives 4.5 and `{"score": 7}` gives 7 (no rounding, no range
    check); `{{"score": 4}}` gives None, because the first `{` up to the first
    `}` is not valid JSON. Where the published code raised (no braces at all,
    e.g. a bare "4"; no "score" key; a score that is not a number) this returns
    None too.
    """
    if not text:
        return None
    match = _FIRST_OBJECT.search(text)
    if match is None:
        return None
    try:
        data = json.loads(match.group())
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or "score" not in data:
        return None
    return _as_number(data["score"])


PARSERS = {"lenient": parse_score, "paper": parse_score_paper}
