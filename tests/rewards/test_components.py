"""The paper preset reproduces the published reward: worked values of the reference and its quirks."""

from __future__ import annotations

import pytest

from deepicd.rewards.components import prefix_credit
from deepicd.rewards.config import load_reward_config
from deepicd.rewards.scorer import RewardScorer


@pytest.fixture(scope="module")
def scorer() -> RewardScorer:
    return RewardScorer(load_reward_config("paper"))


@pytest.fixture(scope="module")
def paper_pattern_scorer() -> RewardScorer:
    return RewardScorer(load_reward_config("paper", ["code_pattern=paper"]))


def answer(code: str, think: str = "reasoning") -> str:
    """A completion as generated after the `<think>` prefill."""
    return f"{think}</think>\n<diagnosis>{code}</diagnosis>"


@pytest.mark.parametrize(
    ("prediction", "value"),
    [("M5116", 75), ("M51161", 60), ("M511", 42), ("M5126", 24), ("M51", 24), ("M5", 6), ("M", 3), ("A419", -1), ("I10", -1)],
)
def test_prefix_credit_worked_values(prediction, value):
    assert prefix_credit(prediction, "M5116", 15.0, -1.0) == pytest.approx(value)


@pytest.mark.parametrize(
    ("prediction", "outcome"),
    [("M5116", 75), ("M51.16", 75), (" M5116 ", 75), ("M51161", 60), ("M511", 42), ("M5126", 24), ("M51", 24),
     ("A419", -1), ("I10", -1), ("M5", -1), ("M", -1), ("m5116", -1), ("", -1), ("PNE", -1)],
)
def test_outcome_term(scorer, prediction, outcome):
    result = scorer.score_rules(answer(prediction), ["M5116"])
    assert result.terms["outcome"] == pytest.approx(outcome)
    assert result.terms["format"] == 1.0
    assert result.total == pytest.approx(outcome + 1.0)


def test_exact_match_flags(scorer):
    result = scorer.score_rules(answer("M51.16"), ["M5116"])
    assert result.exact and result.valid and result.prediction == "M5116"


def test_gold_as_bare_string_is_not_a_first_letter_check(scorer):
    assert scorer.score_rules(answer("M5116"), "M5116").terms["outcome"] == 75
    assert scorer.score_rules(answer("M9999"), "M5116").terms["outcome"] == pytest.approx(3)


def test_no_pair_and_empty_completion(scorer):
    assert scorer.score_rules("just text", ["I10"]).total == -1
    empty = scorer.score_rules("", ["I10"])
    assert empty.terms == {"outcome": -1.0, "format": 0.0, "extra_pairs": 0.0, "empty": -5.0}
    assert empty.total == -6


def test_whitespace_only_trace_earns_the_format_bonus(scorer):
    assert scorer.score_rules(answer("I10", think="  \n "), ["I10"]).terms["format"] == 1.0
    assert scorer.score_rules(answer("I10", think=""), ["I10"]).terms["format"] == 0.0
    assert scorer.score_rules("<diagnosis>I10</diagnosis>", ["I10"]).terms["format"] == 0.0


def test_extra_pairs_cost_one_each(scorer):
    text = answer("I10") + "\n<diagnosis>J18</diagnosis>\n<diagnosis>J189</diagnosis>"
    result = scorer.score_rules(text, ["I10"])
    assert result.terms["extra_pairs"] == -2
    assert result.prediction == "I10"


def test_prefill_is_prepended(scorer):
    # Without the prefill the think block would be unopened; the scorer puts it back.
    assert scorer.score_rules("reasoning</think><diagnosis>I10</diagnosis>", ["I10"]).terms["format"] == 1.0
    # A completion that repeats the prefill nests two think tags: the think block is lost and
    # only a bare diagnosis on its own line still counts, as in the published code.
    repeated = scorer.score_rules("<think>again</think>\n<diagnosis>I10</diagnosis>", ["I10"])
    assert repeated.prediction == "I10" and repeated.terms["format"] == 0.0
    assert scorer.score_rules("<think>again</think><diagnosis>I10</diagnosis>", ["I10"]).prediction is None


def test_letter_in_third_position_is_our_one_deviation(scorer, paper_pattern_scorer):
    for code in ["C4A0", "M1A0", "O9A1", "Z3A0"]:
        assert scorer.score_rules(answer(code), [code]).terms["outcome"] == 15 * len(code)
        assert paper_pattern_scorer.score_rules(answer(code), [code]).terms["outcome"] == -1


def test_case_sensitive_pattern(scorer):
    assert not scorer.score_rules(answer("i10"), ["I10"]).valid


def test_unknown_component_is_rejected():
    from deepicd.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown reward component"):
        load_reward_config("paper", ["components=[outcome,bonus]"])


def test_terms_can_be_reweighted_and_switched_off():
    scorer = RewardScorer(load_reward_config("paper", ["components=[outcome]", "outcome.weight=0.5"]))
    result = scorer.score_rules(answer("I10"), ["I10"])
    assert result.terms == {"outcome": 22.5}
