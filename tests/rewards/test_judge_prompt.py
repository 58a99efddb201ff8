"""The judge prompt's wording contract and the parser of the judge's answers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deepicd.prompts import judge as judge_prompt
from deepicd.rewards.judge_cache import cache_key

ARGS = dict(
    note="CHIEF COMPLAINT: cough",
    code="J189",
    trace="Fever and consolidation.",
    code_text="J189: Pneumonia, unspecified organism",
    guideline="Pneumonia guidance.",
)


@pytest.mark.parametrize(
    ("reply", "score"),
    [
        ('{"score": 4}', 4),
        ('{"score":1}', 1),
        ('  {"score": "5"}  ', 5),
        ('{"score": 3.0}', 3),
        ('```json\n{"score": 2}\n```', 2),
        ('Here is my rating: {"reason": "ok", "score": 4}', 4),
        ('{"Score": 5}', 5),
        ("{'score': 3}", 3),
        ("score: 2", 2),
        ("4", 4),
        (" 5.\n", 5),
        ('<think>The note says {"score": 1} is too low.</think>{"score": 4}', 4),
        ('{"score": 9}', None),
        ('{"score": 0}', None),
        ('{"score": -2}', None),
        ('{"score": 3.5}', None),
        ('{"score": true}', None),
        ('{"score": "high"}', None),
        ('{"rating": 4}', None),
        ("I would rate this 4 out of 5", None),
        ("7", None),
        ("45", None),
        ("", None),
        (None, None),
        ('{"score": 9} but I meant {"score": 4}', None),
    ],
)
def test_parse_score(reply, score):
    assert judge_prompt.parse_score(reply) == score


@given(st.text(max_size=300))
def test_parse_score_never_raises_and_stays_in_range(text):
    score = judge_prompt.parse_score(text)
    assert score is None or 1 <= score <= 5


@pytest.mark.parametrize(
    ("reply", "score"),
    [
        ('{"score": 4}', 4),
        ('{"score": 4.5}', 4.5),  # no rounding: 0.8 x 4.5 = 3.6
        ('{"score": 7}', 7),  # no range check: 5.6
        ('{"score": 0}', 0),
        ('{"score": -2}', -2),
        ('{"score": true}', 1),  # JSON true is the integer 1 to the published code
        ('```json\n{"score": 2}\n```', 2),
        ('Sure: {"score": 3} and later {"score": 5}', 3),  # the first object decides
        ('<think>{"score": 1}</think>{"score": 4}', 1),  # no think-skipping
        ('{{"score": 4}}', None),  # "{{...}" is not JSON: the published code counted 0
        ('{"score": {"value": 4}}', None),  # the span ends at the first "}"
        ("4", None),  # no braces: the published code raised; here it is unparsed
        ('{"score": 4', None),
        ('{"rating": 4}', None),
        ('{"score": "4"}', None),
        ('{"score": null}', None),
        ('{"score": NaN}', None),
        ('{"score": 1e999}', None),
        ("", None),
        (None, None),
    ],
)
def test_parse_score_paper(reply, score):
    parsed = judge_prompt.parse_score_paper(reply)
    assert parsed == score and type(parsed) is type(score)


@given(st.text(max_size=300))
def test_parse_score_paper_never_raises_and_stays_finite(text):
    score = judge_prompt.parse_score_paper(text)
    assert score is None or (isinstance(score, (int, float)) and abs(float(score)) < float("inf"))


def test_paper_rubric_rates_the_reasoning_given_the_code():
    paper = judge_prompt.RUBRICS["paper"]
    system, user = judge_prompt.messages(**ARGS, rubric_name="paper")
    assert (system["content"], user["content"].startswith("Rate the reasoning")) == (paper.system, True)
    for part in ARGS.values():
        assert part in user["content"]
    wording = paper.system + paper.user
    assert "5 = excellent" in wording and "1 = very poor" in wording and '{{"score": n}}' in paper.user
    assert "clinically" in wording and "link" in wording
    # The extended rubric's criteria about the code itself are not the published judge's.
    assert "well chosen" not in wording and "specific" not in wording
    assert paper.version != judge_prompt.VERSION == judge_prompt.RUBRICS["extended"].version == "judge-v1"
    with pytest.raises(ValueError, match="unknown judge rubric"):
        judge_prompt.messages(**ARGS, rubric_name="strict")


def test_messages_hold_every_part_and_ask_for_json_only():
    system, user = judge_prompt.messages(**ARGS)
    assert system["role"] == "system" and user["role"] == "user"
    for part in ARGS.values():
        assert part in user["content"]
    assert "5 = excellent" in system["content"] and "1 = very poor" in system["content"]
    assert "JSON" in system["content"] and '{"score": n}' in user["content"]


def test_completion_prompt_is_the_same_request_as_text():
    text = judge_prompt.completion_prompt(**ARGS)
    assert text.startswith(judge_prompt.SYSTEM)
    assert judge_prompt.user_message(**ARGS) in text
    assert text.endswith(judge_prompt.COMPLETION_SUFFIX)


def test_missing_context_is_marked_not_left_blank():
    _, user = judge_prompt.messages(**{**ARGS, "code_text": "", "guideline": "  "})
    assert user["content"].count("(none available)") == 2


def test_cache_key_depends_on_model_version_and_every_character_of_the_prompt():
    messages = judge_prompt.messages(**ARGS)
    base = cache_key("judge-a", judge_prompt.VERSION, messages)
    assert base == cache_key("judge-a", judge_prompt.VERSION, judge_prompt.messages(**ARGS))
    assert len(base) == 64
    assert base != cache_key("judge-b", judge_prompt.VERSION, messages)
    assert base != cache_key("judge-a", "judge-v0", messages)
    assert base != cache_key(
        "judge-a", judge_prompt.VERSION, judge_prompt.messages(**{**ARGS, "trace": "Fever and consolidatiom."})
    )
