"""The rule-based reward terms, each a pure function registered by name.

Every term takes the parsed completion, the gold code and the preset, and
returns one float. Values follow the published DeepICD-R1 reward exactly
(see docs/deviations.md for the single deliberate difference, the code pattern).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from deepicd.rewards.completion import ParsedCompletion

if TYPE_CHECKING:  # the config reads this module's registry to check `components`; no cycle at import
    from deepicd.rewards.config import RewardConfig

Term = Callable[[ParsedCompletion, str, "RewardConfig"], float]
COMPONENTS: dict[str, Term] = {}

# The judge is registered here too so presets can list it; its value is computed
# asynchronously by the scorer, which is why it has no rule function.
JUDGE = "judge"


def register(name: str) -> Callable[[Term], Term]:
    def add(term: Term) -> Term:
        COMPONENTS[name] = term
        return term

    return add


def common_prefix_length(a: str, b: str) -> int:
    length = 0
    for x, y in zip(a, b):
        if x != y:
            break
        length += 1
    return length


def prefix_credit(prediction: str, gold: str, match: float, no_match: float) -> float:
    """The published hierarchical-prefix value for a valid prediction.

    Exact match: match x len(gold). Same first character: match x (O/len(gold) +
    (O - 2 if O >= 3 else 0)) with O the common-prefix length; the paper's Eq. 1
    writes |O - 2|, a typo for this. Otherwise `no_match`.
    """
    if prediction == gold:
        return match * len(gold)
    overlap = common_prefix_length(prediction, gold)
    if overlap == 0 or not gold:
        return no_match
    return match * (overlap / len(gold) + (overlap - 2 if overlap >= 3 else 0))


@register("outcome")
def outcome(parsed: ParsedCompletion, gold: str, config: RewardConfig) -> float:
    """Hierarchical prefix match of the first pair's code against the gold code."""
    settings = config.outcome
    if not parsed.valid:
        return settings.no_match
    return prefix_credit(parsed.prediction, gold, settings.match, settings.no_match)


@register("format")
def format_bonus(parsed: ParsedCompletion, gold: str, config: RewardConfig) -> float:
    """Bonus when the first pair's think text is non-empty (whitespace-only counts, as published)."""
    return config.format.trace_bonus if parsed.trace else 0.0


@register("extra_pairs")
def extra_pairs(parsed: ParsedCompletion, gold: str, config: RewardConfig) -> float:
    """Penalty for every pair after the first."""
    extra = len(parsed.pairs) - 1
    return config.extra_pairs.penalty * extra if extra > 0 else 0.0


@register("empty")
def empty(parsed: ParsedCompletion, gold: str, config: RewardConfig) -> float:
    """Penalty for a completion of length zero."""
    return config.empty.penalty if len(parsed.raw) == 0 else 0.0

