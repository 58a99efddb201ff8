"""Trace filters: each reason is detected, and a kept trace becomes a completion the scorer accepts."""

from __future__ import annotations

import pytest

from deepicd.distill.filters import FilterConfig, check, names_code, sft_completion
from deepicd.rewards.completion import parse_completion

LOOSE = FilterConfig(min_words=3, max_words=12)
TRACE = "\nFever, cough and a lobar infiltrate point to pneumonia.\n"


@pytest.mark.parametrize(
    ("completion", "reason"),
    [
        (f"{TRACE}</think>\n<diagnosis>J189</diagnosis>", None),
        (f"{TRACE}</think>\n<diagnosis>J18.9</diagnosis>\n", None),  # dotted and trailing newline are fine
        (TRACE + " and so it goes", "no_pair"),  # cut off before the answer
        (f"{TRACE}</think>\nThe answer:\n<diagnosis>J189</diagnosis>", "no_pair"),  # text between the blocks
        (f"{TRACE}</think>\n<diagnosis>J189</diagnosis>\n<diagnosis>J189</diagnosis>", "not_single_pair"),
        (f"{TRACE}</think>\n<diagnosis>J189</diagnosis> because", "not_single_pair"),
        ("  \n </think><diagnosis>J189</diagnosis>", "empty_trace"),
        (f"{TRACE}</think>\n<diagnosis>pneumonia</diagnosis>", "invalid_code"),
        (f"{TRACE}</think>\n<diagnosis>j189</diagnosis>", "invalid_code"),  # case matters, as published
        (f"{TRACE}</think>\n<diagnosis>J181</diagnosis>", "wrong_code"),
        ("\nThis is J18.9, lobar pneumonia.</think>\n<diagnosis>J189</diagnosis>", "early_mention"),
        ("\nThis is j189 for sure.</think>\n<diagnosis>J189</diagnosis>", "early_mention"),
        ("\nPneumonia.</think>\n<diagnosis>J189</diagnosis>", "too_short"),
        ("\n" + "word " * 13 + "</think>\n<diagnosis>J189</diagnosis>", "too_long"),
    ],
)
def test_reasons(completion, reason):
    assert check(completion, "J189", LOOSE).reason == reason


def test_early_mention_can_be_allowed():
    completion = "\nThis is J18.9, lobar pneumonia.</think>\n<diagnosis>J189</diagnosis>"
    assert check(completion, "J189", FilterConfig(min_words=1, reject_early_mention=False)).kept


@pytest.mark.parametrize(
    ("text", "gold", "named"),
    [
        ("code M51.16 fits", "M5116", True),
        ("code M5116.", "M5116", True),
        ("(M51.16)", "M5116", True),
        ("code M51.169 is more specific", "M5116", False),
        ("code M511 is the parent", "M5116", False),
        ("I10 and more", "I10", True),
        ("I10.9 is not it", "I10", False),
        ("MI10 is a word", "I10", False),
        ("c4a.9 in lower case", "C4A9", True),
    ],
)
def test_mention_detection(text, gold, named):
    assert names_code(text, gold) is named


def test_an_irregular_category_needs_the_fixed_pattern():
    completion = f"{TRACE}</think>\n<diagnosis>C4A9</diagnosis>"
    assert check(completion, "C4A9", LOOSE).kept
    assert check(completion, "C4A9", FilterConfig(min_words=3, paper_pattern=True)).reason == "invalid_code"


def test_sft_completion_round_trips_through_the_parser():
    verdict = check(f"{TRACE}</think>\n<diagnosis>J18.9</diagnosis>", "J189", LOOSE)
    text = sft_completion(verdict.trace, "J18.9")
    assert text == f"<think>{TRACE}</think>\n<diagnosis>J189</diagnosis>"
    parsed = parse_completion(text[len("<think>"):])
    assert parsed.prediction == "J189" and parsed.trace == TRACE and check(text[7:], "J189", LOOSE).kept
def test_repair_answer_keeps_the_reasoning_and_writes_the_gold_code():
    from deepicd.distill.filters import FilterConfig, check, sft_completion

    config = FilterConfig(min_words=2, max_words=50, repair_answer=True)
    wrong = check("fever and cough for days</think>\n<diagnosis>I10</diagnosis>", "J189", config)
    assert wrong.kept and wrong.repaired and wrong.code == "J189"
    assert wrong.trace == "fever and cough for days"
    rambling = check("noise tokens with no answer at all", "J189", config)
    assert rambling.kept and rambling.trace == "noise tokens with no answer at all"
    assert sft_completion(rambling.trace, rambling.code).endswith("</think>\n<diagnosis>J189</diagnosis>")
    # A teacher that answers correctly is not touched; the other filters still apply.
    right = check("fever and cough for days</think>\n<diagnosis>J18.9</diagnosis>", "J189", config)
    assert right.kept and not right.repaired
    assert check("  </think><diagnosis>I10</diagnosis>", "J189", config).reason == "empty_trace"
    assert check("it is J18.9 clearly</think><diagnosis>I10</diagnosis>", "J189", config).reason == "early_mention"
    assert check("one</think><diagnosis>I10</diagnosis>", "J189", config).reason == "too_short"
    assert not check("noise", "J189", FilterConfig(min_words=1)).kept
