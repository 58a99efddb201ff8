"""The oracle prompt shows the teacher the note, the gold code, its tabular text and its chapter's guidelines."""

from __future__ import annotations

from deepicd import guidelines, icd
from deepicd.prompts import oracle, task


def test_oracle_prompt_holds_note_code_description_and_guidelines(guidelines_dir):
    note = "CHIEF COMPLAINT: back pain\n\nPRESENT ILLNESS: sciatica down the left leg"
    excerpt = guidelines.code_excerpt("M5116", guidelines_dir)
    system, user = oracle.messages(note, "M51.16", excerpt)
    assert system["role"] == "system" and user["role"] == "user"
    content = user["content"]
    assert note in content
    assert "M51.16" in content and content.rstrip().endswith("<diagnosis>M5116</diagnosis>.")
    assert icd.description("M5116") in content  # ontology description of the gold code
    assert icd.description("M51") in content  # and of its parents
    assert excerpt.splitlines()[0] in content and "chapter 13" in content
    assert "as if you did not know the answer" in system["content"]
    assert oracle.PREFILL == task.PREFILL == "<think>"


def test_unknown_code_and_missing_guidelines_still_make_a_prompt():
    _, user = oracle.messages("note", "Z9999", "")
    assert "not in the ICD-10-CM release" in user["content"]
    assert "no guideline text available" in user["content"]


def test_dotted():
    assert [oracle.dotted(c) for c in ("I10", "M5116", "C4A9", " J18.9 ")] == ["I10", "M51.16", "C4A.9", "J18.9"]
