"""The task prompt: the published instructions in substance, and no real code for a policy to copy."""

from __future__ import annotations

import re

import pytest

from deepicd import icd
from deepicd.prompts import task
from deepicd.rewards.completion import parse_completion

# Anything a reader could take for a code: a letter, a digit, a letter or digit, then up to four more,
# with or without the dot, in any case.
CODE_SHAPED = re.compile(r"\b[A-Za-z][0-9][0-9A-Za-z](?:\.?[0-9A-Za-z]{1,4})?\b")
NOTE = "CHIEF COMPLAINT: chest pain\n\nPRESENT ILLNESS: substernal pressure for two hours."


def _prompt_text() -> str:
    return "\n".join(message["content"] for message in task.messages(NOTE))


def test_no_real_icd_code_appears_in_the_prompt():
    shaped = CODE_SHAPED.findall(_prompt_text())
    real = [token for token in shaped if icd.exists(token.upper()) or icd.exists(icd.category(token.upper()))]
    well_formed = [token for token in shaped if icd.is_well_formed(icd.normalize(token.upper()))]
    assert real == [] and well_formed == [], f"code-shaped tokens in the task prompt: {shaped}"


@pytest.mark.parametrize("code", ["I214", "I21.4", "m5116", "C4A"])
def test_the_code_check_would_catch_a_real_code(code):
    text = f"for example <diagnosis>{code}</diagnosis>."
    assert [token for token in CODE_SHAPED.findall(text) if icd.exists(icd.category(token.upper()))] == [code]


def test_the_format_example_is_a_placeholder():
    assert "<diagnosis>CODE</diagnosis>" in task.SYSTEM
    assert "I214" not in task.SYSTEM and "I214" not in task.USER


def test_instructions_ask_for_reasoning_in_think_then_one_code_in_diagnosis():
    system = task.SYSTEM
    assert "<think>" in system and "</think>" in system
    assert "<diagnosis>" in system and "</diagnosis>" in system
    assert system.index("<think>") < system.index("<diagnosis>")
    assert "one ICD-10-CM code" in system and "one <diagnosis> block" in system
    assert "without the dot" in system
    assert "Write nothing outside these tags" in system


def test_instructions_reason_forward_from_the_admission_note_to_the_discharge_diagnosis():
    text = _prompt_text().lower()
    for phrase in ("admitted", "discharged", "main diagnosis", "reason forward", "complications", "procedures"):
        assert phrase in text, phrase


def test_the_example_layout_itself_parses_as_one_pair():
    layout = task.SYSTEM[task.SYSTEM.index("<think>\n"):task.SYSTEM.index("</diagnosis>") + len("</diagnosis>")]
    parsed = parse_completion(layout[len(task.PREFILL):], task.PREFILL)
    assert len(parsed.pairs) == 1 and parsed.prediction == "CODE" and not parsed.is_valid()


def test_the_note_sits_in_the_user_turn_and_the_version_is_bumped():
    system, user = task.messages(NOTE)
    assert (system["role"], user["role"]) == ("system", "user")
    assert NOTE in user["content"] and NOTE not in system["content"]
    assert task.VERSION == "task-v2" and task.PREFILL == "<think>"
