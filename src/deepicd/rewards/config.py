"""Typed settings of every reward term. Presets live in `configs/rewards/*.yaml`.

The published code reads these constants from environment variables with
`bool(os.getenv(...))`, so its switches could never be turned off; here each
term is a dataclass with a weight, and a term is off when it is not listed in
`components`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from typing import ClassVar

from deepicd.endpoints import EndpointConfig
from deepicd.errors import ConfigError
from deepicd.schema import choice, one_of, require


class CodePattern(StrEnum):
    """Which codes count as well-formed: the reward and the evaluation read `code_pattern` the same way."""

    release = "release"  # every category of the ICD-10-CM release (our one deviation)
    paper = "paper"  # the published pattern, which rejects C4A, M1A, O9A, QA0, ...


@dataclass
class OutcomeConfig:
    """Hierarchical-prefix reward: how much of the gold code the prediction gets right."""

    weight: float = 1.0  # multiplies the term before it is added to the reward
    match: float = 15.0  # per character of the gold code on an exact match; scales partial credit too
    no_match: float = -1.0  # no pair, an invalid code, or a different first character


@dataclass
class FormatConfig:
    """Bonus when the first pair has a non-empty think block (whitespace counts, as published)."""

    weight: float = 1.0  # multiplies the term before it is added to the reward
    trace_bonus: float = 1.0  # added when the first pair's think block is non-empty


@dataclass
class ExtraPairsConfig:
    """Penalty per pair after the first: one answer per note."""

    weight: float = 1.0  # multiplies the term before it is added to the reward
    penalty: float = -1.0  # added once per pair after the first


@dataclass
class EmptyConfig:
    """Penalty for a zero-length completion, on top of the outcome's no-pair value."""

    weight: float = 1.0  # multiplies the term before it is added to the reward
    penalty: float = -5.0  # added for a completion with no text at all


@dataclass
class JudgeConfig(EndpointConfig):
    """LLM-as-judge term: `scale` x the judge's 1-5 rating of the reasoning.

    The server's address and patience are the shared `EndpointConfig` keys
    (`url`, `model`, `api`, `api_key_env`, `concurrency`, `timeout_s`,
    `retries`, `backoff_s`, `allowed_hosts`, `allow_external_endpoint`); the
    judge changes four of their defaults below. The defaults are the
    deterministic judge of the `judge-greedy` preset; the `paper-judge` preset
    sets every key that makes the published judge.
    """

    api: str = "chat"  # "chat" or "completions"
    concurrency: int = 32  # requests in flight per event loop
    timeout_s: float = 30.0  # one attempt of one rating, in seconds
    backoff_s: float = 0.5  # the first retry waits about this long (or as Retry-After asks), doubling after each
    weight: float = 1.0  # multiplies the term before it is added to the reward
    scale: float = 0.8  # the term is scale x the 1-5 rating (the published 0.8: 0.8 to 4.0)
    # Term value when a judge reply has no parseable score (the published code counts 0).
    unparsed_value: float = 0.0
    # Term value when the judge cannot be reached or times out after all retries.
    fallback_value: float = 0.0
    # With api=completions, whose chat template turns the messages into the prompt: "" (none: a plain-text
    # prompt), "same-as-model" (the judge model's own tokenizer, as published), or a Hugging Face id or folder.
    tokenizer: str = ""
    temperature: float = 0.0  # above 0, identical requests are sent separately and nothing is cached
    top_p: float = 1.0  # nucleus sampling of the judge (1: off)
    max_tokens: int = 64  # tokens the judge may write per rating
    # "extended" (reasoning and the code's fit) or "paper" (the published criteria: the reasoning given the code).
    rubric: str = "extended"
    # "lenient" (a 1-5 integer found anywhere) or "paper" (the first {...} as JSON, its score taken as it is).
    score_parser: str = "lenient"
    # Ask the judge only when the diagnosis text as written, dots included, passes the code pattern
    # (the published gate: "I21.4" gets the judge malus although the outcome term strips the dot).
    gate_on_raw_text: bool = False
    batch_deadline_s: float = 300.0  # rows of a batch still unanswered then get fallback_value
    cache_dir: str = ""  # empty: no on-disk cache
    guidelines_dir: str = ""  # folder of chapter_<n>.json guideline files; empty: tabular chapter notes only
    guideline_max_chars: int = 4000  # the chapter guideline excerpt is cut to this length (0: whole chapter)
    # Extra JSON fields sent with every request (server-specific, e.g. vLLM's guided decoding options).
    extra_body: dict = field(default_factory=dict)
    KEY_PREFIX: ClassVar[str] = "judge."  # errors name keys as they are written in a reward preset

    def __post_init__(self) -> None:
        from deepicd.prompts import judge as judge_prompt

        super().__post_init__()
        where = "judge config"
        require(self.batch_deadline_s > 0, where, "judge.batch_deadline_s", "must be positive", self.batch_deadline_s)
        require(self.max_tokens >= 1, where, "judge.max_tokens", "must be at least 1", self.max_tokens)
        require(self.temperature >= 0, where, "judge.temperature", "must be 0 or more", self.temperature)
        require(0 < self.top_p <= 1, where, "judge.top_p", "must be in (0, 1]", self.top_p)
        self.rubric = one_of(judge_prompt.RUBRICS, self.rubric, "judge.rubric", where)
        self.score_parser = one_of(judge_prompt.PARSERS, self.score_parser, "judge.score_parser", where)
        _check_guidelines(self.guidelines_dir)


def _check_guidelines(folder: str) -> None:
    """A guidelines folder that is missing or holds no chapter file is a typo, not a choice: refuse it."""
    if not folder:
        return
    from pathlib import Path

    from deepicd import guidelines

    path = Path(folder).expanduser()
    if not path.is_dir():
        raise ConfigError(f"invalid judge config at key 'judge.guidelines_dir': folder not found: {folder}")
    if not guidelines.available_chapters(path):
        raise ConfigError(f"invalid judge config at key 'judge.guidelines_dir': no chapter_<n>.json files in {folder}")


@dataclass
class RewardConfig:
    """One reward preset: which terms are on, their constants, and how completions are read."""

    name: str = "paper"  # the preset's name, recorded with the scores
    # The assistant turn is prefilled with this text; scorers prepend it before parsing.
    prefill: str = "<think>"
    # "release": every category of the ICD-10-CM release is valid (our one deviation);
    # "paper": the published pattern, which rejects C4A, M1A, O9A, QA0, ...
    code_pattern: str = "release"
    components: list[str] = field(default_factory=lambda: ["outcome", "format", "extra_pairs", "empty"])  # terms on
    outcome: OutcomeConfig = field(default_factory=OutcomeConfig)  # hierarchical-prefix match with the gold code
    format: FormatConfig = field(default_factory=FormatConfig)  # a reasoning before the answer
    extra_pairs: ExtraPairsConfig = field(default_factory=ExtraPairsConfig)  # one answer per note
    empty: EmptyConfig = field(default_factory=EmptyConfig)  # an empty completion
    judge: JudgeConfig = field(default_factory=JudgeConfig)  # the LLM judge of the reasoning (when listed)

    def __post_init__(self) -> None:
        from deepicd.rewards.components import COMPONENTS, JUDGE

        known = sorted([*COMPONENTS, JUDGE])
        unknown = [name for name in self.components if name not in known]
        if unknown:
            raise ConfigError(f"unknown reward component(s) {unknown} in 'components'; known: {known}")
        self.code_pattern = choice(CodePattern, self.code_pattern, "code_pattern", "reward config")


def load_reward_config(name_or_path: str, overrides: list[str] | tuple[str, ...] = ()) -> RewardConfig:
    """A reward preset by name (`paper`, `paper-judge`, `judge-greedy`) or YAML path, checked when built."""
    from deepicd.config import load

    return load(RewardConfig, "rewards", name_or_path, overrides)
