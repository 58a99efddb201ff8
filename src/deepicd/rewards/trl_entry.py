"""TRL reward functions: one per reward component, so TRL logs `rewards/<name>/mean` for each.

TRL's GRPOTrainer calls every reward function with `prompts`, `completions`,
`completion_ids` and the dataset's other columns as keyword lists, then sums
the returned lists with `reward_weights`. Each component here returns its
already weighted term, so the trainer's weights stay at 1 and TRL's total equals
the scorer's total.

The rule terms share one parse per batch (a small memo keyed by the batch), so
splitting the reward into several functions costs no extra parsing. The judge
is an `async` function: TRL runs those on its own event loop, concurrently with
each other, and the judge client is created lazily on that loop.

Completions are plain strings for standard (text) prompts and lists of
messages for conversational ones; both are accepted. Dataset columns used:
`gold` (the first code, or a list holding it) and, for the judge, `note`.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any, Callable, Sequence

from deepicd.rewards.components import COMPONENTS, JUDGE
from deepicd.rewards.config import RewardConfig
from deepicd.rewards.scorer import RewardResult, RewardScorer

GOLD_COLUMN = "gold"
NOTE_COLUMN = "note"


def completion_text(completion: Any) -> str:
    """The generated text of a completion: a string, or the assistant messages of a conversation."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return _content_text(completion.get("content"))
    if isinstance(completion, (list, tuple)):
        turns = [m for m in completion if isinstance(m, dict) and m.get("role", "assistant") == "assistant"]
        return "".join(_content_text(m.get("content")) for m in turns)
    raise TypeError(f"a completion must be a string or a list of messages, got {type(completion).__name__}")


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    # OpenAI-style content parts: keep the text ones.
    return "".join(part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text")


def _column(kwargs: dict, name: str, size: int, *, required: bool) -> list:
    values = kwargs.get(name)
    if values is None:
        if required:
            raise KeyError(f"the reward functions need a dataset column {name!r}; the columns given were {sorted(kwargs)}")
        return [None] * size
    values = list(values)
    if len(values) != size:
        raise ValueError(f"column {name!r} has {len(values)} values for {size} completions")
    return values


class _RuleBatch:
    """Scores a batch of completions once; every rule-term function reads its term from the same results."""

    def __init__(self, config: RewardConfig) -> None:
        rules = [name for name in config.components if name != JUDGE]
        self.scorer = RewardScorer(dataclasses.replace(config, components=rules))
        self._lock = threading.Lock()
        self._key: tuple | None = None
        self._results: list[RewardResult] = []

    def __getstate__(self) -> dict:
        # Picklable (TRL and accelerate may copy reward functions): the lock and memo are rebuilt.
        return {"scorer": self.scorer}

    def __setstate__(self, state: dict) -> None:
        self.scorer = state["scorer"]
        self._lock = threading.Lock()
        self._key, self._results = None, []

    def results(self, completions: Sequence[Any], golds: Sequence[Any]) -> list[RewardResult]:
        texts = tuple(completion_text(c) for c in completions)
        key = (texts, tuple(map(repr, golds)))
        with self._lock:
            if key != self._key:
                self._results = [self.scorer.score_rules(text, gold) for text, gold in zip(texts, golds)]
                self._key = key
            return self._results


class RuleReward:
    """One rule term of the preset as a TRL reward function (named after the term, for TRL's logs)."""

    def __init__(self, name: str, batch: _RuleBatch) -> None:
        self.__name__ = name
        self.__doc__ = COMPONENTS[name].__doc__
        self._batch = batch

    def __call__(self, prompts=None, completions=None, completion_ids=None, **kwargs) -> list[float]:
        golds = _column(kwargs, GOLD_COLUMN, len(completions), required=True)
        results = self._batch.results(completions, golds)
        log_metric = kwargs.get("log_metric")
        if log_metric is not None and self.__name__ == self._batch.scorer.rule_terms[0]:
            # Reported once per batch, by the first term: exact-match and valid-code rates.
            log_metric("reward_acc", sum(r.exact for r in results) / max(len(results), 1))
            log_metric("reward_valid", sum(r.valid for r in results) / max(len(results), 1))
        return [r.terms[self.__name__] for r in results]


class JudgeReward:
    """The LLM-judge term as an async TRL reward function; the judge client is built on first use."""

    def __init__(self, config: RewardConfig, judge=None) -> None:
        self.__name__ = JUDGE
        self.__doc__ = "LLM judge: scale x the 1-5 rating of the reasoning, or the paper's malus when not judgeable."
        self._config = config
        self._judge = judge
        self._scorer: RewardScorer | None = None

    def _get_scorer(self) -> RewardScorer:
        if self._scorer is None:
            self._scorer = RewardScorer(dataclasses.replace(self._config, components=[JUDGE]), judge=self._judge)
        return self._scorer

    async def __call__(self, prompts=None, completions=None, completion_ids=None, **kwargs) -> list[float]:
        size = len(completions)
        golds = _column(kwargs, GOLD_COLUMN, size, required=True)
        notes = _column(kwargs, NOTE_COLUMN, size, required=True)
        items = [(completion_text(c), g, n) for c, g, n in zip(completions, golds, notes)]
        results = await self._get_scorer().ascore_batch(items)
        log_metric = kwargs.get("log_metric")
        if log_metric is not None and results:
            asked = [r for r in results if r.judge_status not in (None, "skipped")]
            log_metric("judge_asked", len(asked) / len(results))
            log_metric("judge_fallback", sum(r.judge_status == "fallback" for r in results) / len(results))
            rated = [r.judge_score for r in asked if r.judge_score is not None]
            if rated:
                log_metric("judge_rating", sum(rated) / len(rated))
        return [r.terms[JUDGE] for r in results]


def reward_functions(config: RewardConfig, judge=None) -> list[Callable]:
    """The preset's components as TRL reward functions, in the preset's order (weights already applied)."""
    batch = _RuleBatch(config)
    functions: list[Callable] = []
    for name in config.components:
        functions.append(JudgeReward(config, judge) if name == JUDGE else RuleReward(name, batch))
    return functions
