"""Admission notes cut from hand-written discharge summaries in MIMIC-IV-Note layout."""

from __future__ import annotations

from mimickit import standard_sections, summary

from deepicd.mimic import sections


def test_full_summary_keeps_admission_sections_in_order_and_drops_discharge_facts():
    note = sections.admission_note(summary(standard_sections()))
    assert note is not None
    assert note.sections == (
        "chief_complaint", "present_illness", "medical_history", "medications_on_admission",
        "allergies", "physical_exam", "family_history", "social_history",
    )
    paragraphs = note.text.split("\n\n")
    assert [p.split(":", 1)[0] for p in paragraphs] == [
        "CHIEF COMPLAINT", "PRESENT ILLNESS", "MEDICAL HISTORY", "MEDICATION ON ADMISSION",
        "ALLERGIES", "PHYSICAL EXAM", "FAMILY HISTORY", "SOCIAL HISTORY",
    ]
    assert paragraphs[0] == "CHIEF COMPLAINT: chest pain"
    assert "ALLERGIES: Penicillins" in paragraphs
    for leaked in ("NSTEMI", "Clopidogrel", "cath lab", "troponin", "Home", "Discharge", "DISCHARGE", "Attending",
                   "comfortable", "Followup"):
        assert leaked not in note.text


def test_social_history_followed_by_family_history_without_separator():
    text = summary([
        ("Chief Complaint", "fever"),
        ("Social History", "___\nFamily History:\nMother with lupus."),
    ])
    assert "Social History:\n___\nFamily History:\nMother with lupus." in text
    raw = sections.split_sections(text)
    assert sections.clean(raw["social_history"]) == "___"
    assert sections.clean(raw["family_history"]) == "Mother with lupus."
    note = sections.admission_note(text)
    assert "FAMILY HISTORY: Mother with lupus." in note.text
    # a social history of only a de-identified span says nothing and is left out
    assert "SOCIAL HISTORY" not in note.text and "social_history" not in note.sections


def _exam_note(exam: str) -> str:
    return sections.admission_note(summary([("Chief Complaint", "cough"), ("Physical Exam", exam)])).text


def test_discharge_exam_after_a_blank_line_is_cut():
    text = _exam_note("ADMISSION PHYSICAL EXAM:\nLungs: rhonchi at the right base\n \n"
                      "DISCHARGE PHYSICAL EXAM:\nLungs: clear, pneumonia resolved")
    assert "PHYSICAL EXAM: ADMISSION PHYSICAL EXAM:\nLungs: rhonchi at the right base" in text
    assert "clear" not in text and "DISCHARGE" not in text and "resolved" not in text


def test_discharge_exam_without_a_blank_line_is_cut():
    text = _exam_note("Lungs: rhonchi at the right base\nDischarge PE:\nLungs: clear, pneumonia resolved")
    assert text.endswith("PHYSICAL EXAM: Lungs: rhonchi at the right base")


def test_discharge_exam_spellings():
    for marker in ("PHYSICAL EXAM ON DISCHARGE:", "ON DISCHARGE:", "=== DISCHARGE EXAM ===", "Discharge:",
                   "Exam on discharge:", "DISCHARGE VITALS:", "At discharge:"):
        exam = f"Abd: tender RUQ\n{marker}\nAbd: soft, resolved"
        assert sections.admission_exam(exam) == "Abd: tender RUQ\n", marker


def test_exam_with_discharge_part_first_keeps_the_admission_part():
    exam = "DISCHARGE EXAM:\nAbd: soft\n \nADMISSION EXAM:\nAbd: guarding and rebound"
    assert sections.clean(sections.admission_exam(exam)) == "ADMISSION EXAM:\nAbd: guarding and rebound"
    assert sections.admission_exam("DISCHARGE EXAM:\nAbd: soft") == ""


def test_exam_words_that_are_not_a_discharge_heading_stay():
    exam = "General: ill appearing, discharge from the left ear\nHEENT: otorrhea"
    assert sections.admission_exam(exam) == exam


def test_missing_sections_are_skipped_and_a_note_without_core_sections_is_dropped():
    only_history = summary([("Past Medical History", "- asthma"), ("Family History", "None")])
    note = sections.admission_note(only_history)
    assert note.text == "MEDICAL HISTORY: - asthma\n\nALLERGIES: Penicillins\n\nFAMILY HISTORY: None"
    no_core = summary([("Physical Exam", "VS: normal"), ("Family History", "None"),
                       ("Discharge Diagnosis", "asthma")])
    assert sections.admission_note(no_core) is None
    empty_core = summary([("Chief Complaint", "___"), ("History of Present Illness", " \n"),
                          ("Physical Exam", "VS: normal")])
    assert sections.admission_note(empty_core) is None
    assert sections.admission_note("") is None


def test_header_words_inside_text_do_not_split_a_section():
    illness = ("Seen at OSH.\nPast medical history: per daughter, significant for CHF.\n"
               "ADMISSION LABS:\nWBC 14")
    note = sections.admission_note(summary([("History of Present Illness", illness)]))
    assert note.sections == ("present_illness", "allergies")
    assert "Past medical history: per daughter" in note.text and "ADMISSION LABS:\nWBC 14" in note.text


def test_paragraphs_of_a_section_after_separator_lines_stay_with_it():
    course = "# Pneumonia: ceftriaxone.\n \n# CHF: diuresed."
    raw = sections.split_sections(summary([("Brief Hospital Course", course), ("Discharge Diagnosis", "PNA")]))
    assert sections.clean(raw["hospital_course"]) == "# Pneumonia: ceftriaxone.\n# CHF: diuresed."
    assert sections.clean(raw["discharge_diagnosis"]) == "PNA"


def test_repeated_header_bodies_are_joined_and_masked_exam_header_is_recognised():
    text = summary([("Past Medical History", "- DM2"), ("Chief Complaint", "dizziness"),
                    ("Past Medical History", "- CKD"), ("Physical ___", "Neuro: nystagmus")])
    note = sections.admission_note(text)
    assert "MEDICAL HISTORY: - DM2\n- CKD" in note.text
    assert "PHYSICAL EXAM: Neuro: nystagmus" in note.text


def test_allergies_end_at_the_attending_line_and_trailing_blanks_go():
    note = sections.admission_note(summary([("Chief Complaint", "rash   ")], allergies="Sulfa   \nLatex"))
    assert note.text == "CHIEF COMPLAINT: rash\n\nALLERGIES: Sulfa\nLatex"


def test_sections_can_be_chosen_and_required():
    text = summary(standard_sections())
    note = sections.admission_note(text, sections=("present_illness", "chief_complaint"),
                                   require_any=("present_illness",))
    assert note.text.startswith("PRESENT ILLNESS: 67F") and note.text.endswith("CHIEF COMPLAINT: chest pain")
    assert sections.admission_note(summary([("Chief Complaint", "cough")]), require_any=("present_illness",)) is None
