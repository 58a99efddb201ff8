"""Combine the reward terms of a preset into one score per completion.

Rule terms are cheap pure functions and run inline. The judge term needs a
model server, so it is awaited for a whole batch at once; the scorer asks the
judge only for completions that can be judged (a pair, a valid code and a
non-empty trace), as the published code does, and gives the others the
paper's malus without a call. The published code tests the code pattern for
the judge on the diagnosis text as written, before its dots are removed;
`judge.gate_on_raw_text` does the same.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Sequence

from deepicd import icd
from deepicd.rewards.completion import ParsedCompletion, normalize_gold, parse_completion
from deepicd.rewards.components import COMPONENTS, JUDGE
from deepicd.rewards.config import RewardConfig
from deepicd.errors import UserError
from deepicd.rewards.judging import Judge, JudgeRequest, JudgeVerdict


@dataclass
class RewardResult:
    """The total and every term of one completion's reward."""

    total: float
    terms: dict[str, float]
    prediction: str | None
    valid: bool
    exact: bool
    judge_score: int | float | None = None
    judge_status: str | None = None
    extra: dict = field(default_factory=dict)

    def as_row(self) -> dict:
        row = {"reward": self.total, **self.terms, "prediction": self.prediction, "valid": self.valid, "exact": self.exact}
        if JUDGE in self.terms:
            row["judge_score"] = self.judge_score
            row["judge_status"] = self.judge_status
        return row


class RewardScorer:
    """Scores completions with the terms a `RewardConfig` lists."""

    def __init__(self, config: RewardConfig, judge: Judge | None = None) -> None:
        self.config = config
        self.rule_terms = [name for name in config.components if name != JUDGE]
        self.uses_judge = JUDGE in config.components
        if self.uses_judge and judge is None:
            from deepicd.rewards.judge import build_judge

            judge = build_judge(config.judge)
        self.judge = judge
        # Where the judge's chapter guidelines come from ('files:<folder>' or 'tabular-fallback'), for manifests.
        self.guidelines_source: str | None = getattr(judge, "guidelines_source", None) if self.uses_judge else None
        self._paper_pattern = config.code_pattern == "paper"
        # Resolved once: the per-completion path is hot (hundreds of thousands per second).
        self._terms = [(name, COMPONENTS[name], self._weight(name)) for name in self.rule_terms]

    def _weight(self, name: str) -> float:
        return getattr(self.config, name).weight

    def _rules(self, completion: str, gold: object) -> tuple[ParsedCompletion, str, dict[str, float]]:
        if not isinstance(completion, str):
            raise TypeError(f"completion must be a string, got {type(completion).__name__}")
        parsed = parse_completion(completion, self.config.prefill, self._paper_pattern)
        gold_code = normalize_gold(gold)
        config = self.config
        terms = {name: weight * term(parsed, gold_code, config) for name, term, weight in self._terms}
        return parsed, gold_code, terms

    def _result(self, parsed: ParsedCompletion, gold: str, terms: dict[str, float]) -> RewardResult:
        return RewardResult(
            total=sum(terms.values()),
            terms=terms,
            prediction=parsed.prediction,
            valid=parsed.valid,
            exact=parsed.valid and parsed.prediction == gold,
        )

    def judgeable(self, parsed: ParsedCompletion) -> bool:
        """The published rule: judge only a pair with a valid code and a non-blank trace."""
        if not (parsed.valid and (parsed.trace or "").strip()):
            return False
        return not self.config.judge.gate_on_raw_text or self._raw_code_valid(parsed)

    def _raw_code_valid(self, parsed: ParsedCompletion) -> bool:
        """The code pattern on the diagnosis text as written (stripped, dots kept), as the published judge checks it."""
        first = parsed.first
        return first is not None and icd.is_well_formed(first.diagnosis.strip(), paper_pattern=self._paper_pattern)

    def score_rules(self, completion: str, gold: object) -> RewardResult:
        """Score without the judge term (fast path for presets without a judge)."""
        return self._result(*self._rules(completion, gold))

    async def ascore_batch(self, items: Sequence[tuple[str, object, str | None]]) -> list[RewardResult]:
        """Score (completion, gold, note) triples; judge calls for the batch run concurrently."""
        results, requests, asked = [], [], []
        for index, (completion, gold, note) in enumerate(items):
            parsed, gold_code, terms = self._rules(completion, gold)
            result = self._result(parsed, gold_code, terms)
            results.append(result)
            if not self.uses_judge:
                continue
            if self.judgeable(parsed):
                if note is None:
                    raise UserError("the judge reward needs the admission note; pass `note` for every completion")
                requests.append(JudgeRequest(note=note, prediction=parsed.prediction or "", trace=parsed.trace or ""))
                asked.append(index)
            else:
                self._set_judge(result, -self.config.judge.scale, None, "skipped")
        if requests:
            verdicts = await self.judge.rate_many(requests)
            for index, verdict in zip(asked, verdicts):
                self._set_judge(results[index], self._judge_value(verdict), verdict.score, verdict.status)
        return results

    def _judge_value(self, verdict: JudgeVerdict) -> float:
        settings = self.config.judge
        if verdict.score is not None:
            return settings.scale * verdict.score
        return settings.fallback_value if verdict.status == "fallback" else settings.unparsed_value

    def _set_judge(self, result: RewardResult, value: float, score: int | float | None, status: str) -> None:
        weighted = self._weight(JUDGE) * value
        result.terms[JUDGE] = weighted
        result.total += weighted
        result.judge_score = score
        result.judge_status = status

    def score_batch(self, items: Sequence[tuple[str, object, str | None]]) -> list[RewardResult]:
        """Synchronous wrapper around `ascore_batch` for callers without an event loop."""
        if not self.uses_judge:
            return [self.score_rules(completion, gold) for completion, gold, _ in items]
        return asyncio.run(self.ascore_batch(items))

    def score(self, completion: str, gold: object, note: str | None = None) -> RewardResult:
        return self.score_batch([(completion, gold, note)])[0]
