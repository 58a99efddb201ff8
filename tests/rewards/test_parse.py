"""The linear-time pair parser returns exactly what the published regular expression finds."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepicd.rewards.parse import find_pairs

# The published expression: multiline `^`, optional whitespace, optional think
# block, optional whitespace, diagnosis block; bodies hold no tag of their kind.
_BODY = r"[^<]*(?:<(?!/?{tag}>)[^<]*)*"
PUBLISHED = re.compile(
    r"^\s*(?:<think>(" + _BODY.format(tag="think") + r")</think>)?\s*<diagnosis>("
    + _BODY.format(tag="diagnosis") + r")</diagnosis>",
    re.MULTILINE,
)

PIECES = ["<think>", "</think>", "<diagnosis>", "</diagnosis>", "\n", " ", "\t", "\n \n", "M51", "x", "<", ">", "/", "think", "\u00a0", "\r\n"]


def published_pairs(text: str) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in PUBLISHED.finditer(text)]


def ours(text: str) -> list[tuple[str, str]]:
    return [(p.think, p.diagnosis) for p in find_pairs(text)]


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=30).map("".join))
def test_matches_published_expression_on_tag_soup(text):
    assert ours(text) == published_pairs(text)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=200))
def test_matches_published_expression_on_any_text(text):
    assert ours(text) == published_pairs(text)


def test_typical_completion():
    text = "<think>Chest pain, troponin up.</think>\n<diagnosis>I21.4</diagnosis>"
    [pair] = find_pairs(text)
    assert pair.think == "Chest pain, troponin up."
    assert pair.diagnosis == "I21.4"
    assert (pair.start, pair.end) == (0, len(text))


@settings(max_examples=1000, deadline=None)
@given(st.sampled_from(["", " ", "\n", " \n\t"]), st.text(alphabet="ab \n<>/", max_size=20), st.text(alphabet="I10 .\n<", max_size=8), st.sampled_from(["", "\n", " \n ", "x"]))
def test_single_pair_fast_path_agrees(lead, think, code, tail):
    text = f"{lead}<think>{think}</think>{lead}<diagnosis>{code}</diagnosis>{tail}"
    assert ours(text) == published_pairs(text)
    assert [(p.start, p.end) for p in find_pairs(text)] == [m.span() for m in PUBLISHED.finditer(text)]


def test_pair_must_start_a_line():
    assert find_pairs("<think>a</think> text <diagnosis>I10</diagnosis>") == []
    assert ours("<think>a</think>\nsee: <diagnosis>I10</diagnosis>") == []
    assert ours("<think>a</think>\n  <diagnosis>I10</diagnosis>") == [("a", "I10")]
    assert ours("x <think>a</think>\n  <diagnosis>I10</diagnosis>") == [(None, "I10")]


def test_think_is_optional_and_bodies_span_lines():
    assert ours("<diagnosis>\nI10\n</diagnosis>") == [(None, "\nI10\n")]
    assert ours("<think>line one\nline two</think><diagnosis>I10</diagnosis>") == [("line one\nline two", "I10")]


def test_several_pairs_are_found_in_order():
    text = "<think>a</think><diagnosis>I10</diagnosis>\n<think>b</think><diagnosis>J18</diagnosis>"
    assert ours(text) == [("a", "I10"), ("b", "J18")]


def test_nested_think_blocks_do_not_form_a_pair():
    assert ours("<think>a<think>b</think><diagnosis>I10</diagnosis>") == []


@pytest.mark.timeout(60)
def test_a_megabyte_of_blank_lines_finishes_and_finds_no_pair():
    # The published expression needs ~28 s for 12,750 characters of this (a backtracking blow-up); the
    # timeout catches one here, and benchmarks/bench_rewards.py measures how fast it really is.
    text = "<think>" + "\n" * 1_000_000 + "<diagnosis>I10"
    assert find_pairs(text) == []
