"""Which teacher traces become SFT examples, and why the others do not.

The published distillation kept every teacher output. A student then learns
from traces that never reach an answer, answer with the wrong code, or give the
answer away in their first sentence (the oracle knows it). We keep a trace only if

1. it is one well-formed pair: the prefilled think block, non-empty, closed, then
   one diagnosis block with a syntactically valid code, and nothing after it;
2. its code is the gold code;
3. its reasoning never names the gold code, with or without the dot;
4. its reasoning has between `min_words` and `max_words` words.

The first failing check is the reason counted, so the counts add up to the
number of rejected traces and show which check to loosen or which prompt to fix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from deepicd import icd
from deepicd.errors import ConfigError
from deepicd.rewards.completion import parse_completion

# Rejection reasons in the order they are checked.
REASONS = (
    "no_pair",  # no think/diagnosis pair at all (also: output cut off before </diagnosis>)
    "not_single_pair",  # text before the pair, a second pair, or text after the diagnosis
    "empty_trace",  # the think block holds only whitespace
    "invalid_code",  # the diagnosis is not a well-formed ICD-10-CM code
    "wrong_code",  # a valid code, but not the gold one
    "early_mention",  # the reasoning names the gold code
    "too_short",
    "too_long",
)


@dataclass
class FilterConfig:
    """Bounds and switches of the trace filters (the paper's kept traces ran 31 to 883 words)."""

    min_words: int = 30  # a shorter reasoning is rejected
    max_words: int = 1000  # a longer reasoning is rejected (0: no bound)
    reject_early_mention: bool = True  # reject a reasoning that names the gold code (the oracle gave it away)
    paper_pattern: bool = False  # validate codes with the published pattern (rejects C4A, O9A, ...)
    # Keep the teacher's reasoning and write the gold code as its answer when the teacher's own
    # answer is missing, malformed or wrong. Only for a teacher too small to follow the oracle
    # prompt (the CPU demo's tiny model): its reasoning is kept as written, the answer is the oracle's.
    repair_answer: bool = False

    def __post_init__(self) -> None:
        if self.min_words < 0 or (self.max_words > 0 and self.max_words < self.min_words):
            raise ConfigError("invalid distill config at keys 'filters.min_words'/'filters.max_words': "
                              f"{self.min_words}..{self.max_words}")


@dataclass(frozen=True)
class Verdict:
    """The outcome for one completion: `reason` is None when it is kept."""

    reason: str | None
    trace: str | None = None
    code: str | None = None
    words: int = 0
    repaired: bool = False  # the answer was replaced by the gold code (`repair_answer`)

    @property
    def kept(self) -> bool:
        return self.reason is None


@lru_cache(maxsize=4096)
def mention_pattern(gold: str) -> re.Pattern[str]:
    """A code as a whole token, dot optional after the category, any case (M5116, M51.16, m51.16)."""
    code = icd.normalize(gold)
    body = re.escape(code[:3]) + (r"\.?" + re.escape(code[3:]) if len(code) > 3 else "")
    return re.compile(rf"(?<![A-Za-z0-9.]){body}(?!\.?[A-Za-z0-9])", re.IGNORECASE)


def names_code(text: str, gold: str) -> bool:
    """True if `text` names the gold code (a longer code that merely starts with it does not count)."""
    return bool(mention_pattern(icd.normalize(gold)).search(text))


def word_count(text: str) -> int:
    return len(text.split())


def _reasoning(completion: str) -> str:
    """The teacher's reasoning: the text before its first closing think tag, without tags."""
    head = completion.split("</think>", 1)[0]
    return re.sub(r"</?(?:think|diagnosis)>", " ", head)


def _trace_checks(trace: str, gold: str, code: str, words: int, config: FilterConfig) -> Verdict | None:
    """The checks on the reasoning itself: no early mention of the gold code, length bounds."""
    if config.reject_early_mention and names_code(trace, gold):
        return Verdict("early_mention", trace=trace, code=code, words=words)
    if words < config.min_words:
        return Verdict("too_short", trace=trace, code=code, words=words)
    if config.max_words > 0 and words > config.max_words:
        return Verdict("too_long", trace=trace, code=code, words=words)
    return None


def _repaired(completion: str, gold: str, config: FilterConfig) -> Verdict:
    trace = _reasoning(completion)
    if not trace.strip():
        return Verdict("empty_trace", trace=trace)
    words = word_count(trace)
    rejected = _trace_checks(trace, gold, gold, words, config)
    return rejected or Verdict(None, trace=trace, code=gold, words=words, repaired=True)


def check(completion: str, gold: str, config: FilterConfig, prefill: str = "<think>") -> Verdict:
    """Judge one teacher completion (the text generated after `prefill`) against the gold code."""
    gold = icd.normalize(gold)
    verdict = _check(completion, gold, config, prefill)
    if config.repair_answer and verdict.reason in {"no_pair", "not_single_pair", "invalid_code", "wrong_code"}:
        return _repaired(completion, gold, config)
    return verdict


def _check(completion: str, gold: str, config: FilterConfig, prefill: str) -> Verdict:
    parsed = parse_completion(completion, prefill)
    pair = parsed.first
    if pair is None or pair.think is None:
        return Verdict("no_pair")
    full = prefill + completion
    if len(parsed.pairs) > 1 or full[: pair.start].strip() or full[pair.end :].strip():
        return Verdict("not_single_pair")
    trace = pair.think
    if not trace.strip():
        return Verdict("empty_trace", trace=trace)
    code = icd.normalize(pair.diagnosis)
    words = word_count(trace)
    if not code or not icd.is_well_formed(code, paper_pattern=config.paper_pattern):
        return Verdict("invalid_code", trace=trace, code=code, words=words)
    if code != gold:
        return Verdict("wrong_code", trace=trace, code=code, words=words)
    rejected = _trace_checks(trace, gold, code, words, config)
    return rejected or Verdict(None, trace=trace, code=code, words=words)


def sft_completion(trace: str, code: str, prefill: str = "<think>") -> str:
    """The assistant text a student learns: the prefill, the trace, then exactly one answer."""
    return f"{prefill}{trace}</think>\n<diagnosis>{icd.normalize(code)}</diagnosis>"
