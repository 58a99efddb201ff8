"""Any text gets a finite reward inside the preset's bounds, even when degenerate.

How fast degenerate text is scored is a benchmark (benchmarks/bench_rewards.py, docs/benchmarks.md);
here a timeout only guards against a parser that never finishes.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepicd.rewards.config import load_reward_config
from deepicd.rewards.scorer import RewardScorer

CONFIG = load_reward_config("paper")
SCORER = RewardScorer(CONFIG)
SHORTEST_PAIR = len("<diagnosis></diagnosis>")


def bounds(length: int) -> tuple[float, float]:
    """Range of the paper reward for a completion of `length` characters."""
    most_pairs = (length + len(CONFIG.prefill)) // SHORTEST_PAIR + 1
    upper = CONFIG.outcome.match * 7 + CONFIG.format.trace_bonus
    lower = CONFIG.outcome.no_match + CONFIG.empty.penalty + CONFIG.extra_pairs.penalty * most_pairs
    return lower, upper


TAGS = st.sampled_from(["<think>", "</think>", "<diagnosis>", "</diagnosis>", "\n", " ", "I10", "M5116", "C4A0", ".", "\x00", "\u2028"])


@settings(max_examples=1000, deadline=None)
@given(st.one_of(st.text(max_size=300), st.lists(TAGS, max_size=60).map("".join)), st.sampled_from(["I10", "M5116", "C4A0", "Z3A00"]))
def test_reward_is_finite_and_bounded(completion, gold):
    result = SCORER.score_rules(completion, [gold])
    lower, upper = bounds(len(completion))
    assert math.isfinite(result.total)
    assert lower <= result.total <= upper
    assert result.total == pytest.approx(sum(result.terms.values()))


MEGABYTE = 1_000_000
DEGENERATE = {
    "blank lines": "\n" * MEGABYTE,
    "blank lines with spaces": "\n \n" * (MEGABYTE // 3),
    "blank lines then an opening diagnosis": "\n" * MEGABYTE + "<diagnosis>I10",
    "think tag spam": "<think>" * (MEGABYTE // 7),
    "closing tag spam": "</think>\n" * (MEGABYTE // 9),
    "diagnosis tag spam": "<diagnosis>\n" * (MEGABYTE // 12),
    "unclosed think then closers": "<think>\n" * (MEGABYTE // 16) + "</think>" * (MEGABYTE // 16),
    "pair spam": "</think><diagnosis>I10</diagnosis>\n" * (MEGABYTE // 36),
    "nested tags": "<think><diagnosis><think></diagnosis>\n" * (MEGABYTE // 38),
    "control characters": "".join(chr(i % 32) for i in range(MEGABYTE)),
    "whitespace variety": " \t\r\x0b\x0c\u00a0\u2003\n" * (MEGABYTE // 8) + "<diagnosis>I10</diagnosis>",
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", sorted(DEGENERATE))
def test_degenerate_megabyte_gets_a_bounded_reward(name):
    completion = DEGENERATE[name]
    result = SCORER.score_rules(completion, ["I10"])
    lower, upper = bounds(len(completion))
    assert lower <= result.total <= upper
