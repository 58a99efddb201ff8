"""What a judge is asked and what it answers: the interface between the reward scorer and any judge.

The scorer builds requests and reads verdicts; `rewards.judge` implements a
judge on an OpenAI-compatible server. Both import this module and not each
other, so scoring rules alone never loads the HTTP client.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence


@dataclass(frozen=True)
class JudgeRequest:
    """What the judge sees: the note, the *predicted* code and the reasoning trace."""

    note: str
    prediction: str
    trace: str


@dataclass(frozen=True)
class JudgeVerdict:
    """The judge's rating (1-5; the published reading of a reply keeps 4.5 or 7), or None and why."""

    score: int | float | None
    status: str  # "ok", "cached", "unparsed", "fallback"


class Judge(Protocol):
    async def rate_many(self, requests: Sequence[JudgeRequest]) -> list[JudgeVerdict]: ...
