"""From a MIMIC-IV discharge summary to an admission note: what was known when the patient arrived.

The task predicts a discharge diagnosis from admission-time text, so anything
written about the stay (procedures, results, hospital course, discharge
medications, diagnosis, condition, instructions, the discharge exam) is leakage
and must go. Following van Aken et al. (2021), kept by the DeepICD-R1 line of
work, the note keeps eight sections in a fixed order, written as `HEADER: text`
paragraphs.

Discharge summaries come from a template: each section starts with a header
line such as `Chief Complaint:` on its own, and sections are usually separated
by a line holding a single space. Splitting on the separator alone is wrong —
`Social History:\\n___\\nFamily History:` often has none, and a paragraph of the
hospital course or a discharge exam after a separator would be read as a new
section — so the splitter finds the template's header lines themselves, in one
pass, and a chunk without a known header stays with the section before it.
Headers are matched with the template's spelling and only as whole lines, so a
sentence inside the present illness that begins with "Past medical history:"
does not split it.

The physical exam often holds the admission exam and then the discharge exam,
with or without a blank line between; the discharge part is cut at the first
line that announces it ("DISCHARGE PHYSICAL EXAM:", "Discharge PE:",
"PHYSICAL EXAM ON DISCHARGE:", "ON DISCHARGE:", ...).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import NamedTuple

# Template header line -> section key. Keys of the admission note come first.
SECTION_HEADERS: dict[str, str] = {
    "Chief Complaint": "chief_complaint",
    "History of Present Illness": "present_illness",
    "Past Medical History": "medical_history",
    "Medications on Admission": "medications_on_admission",
    "Allergies": "allergies",
    "Physical Exam": "physical_exam",
    "Physical ___": "physical_exam",  # de-identification sometimes masks "Exam"
    "Family History": "family_history",
    "Social History": "social_history",
    "Major Surgical or Invasive Procedure": "procedures",
    "Pertinent Results": "results",
    "Brief Hospital Course": "hospital_course",
    "Discharge Medications": "discharge_medications",
    "Discharge Disposition": "discharge_disposition",
    "Facility": "discharge_facility",
    "Discharge Diagnosis": "discharge_diagnosis",
    "Discharge Diagnoses": "discharge_diagnosis",
    "Discharge Condition": "discharge_condition",
    "Discharge Instructions": "discharge_instructions",
    "Followup Instructions": "followup_instructions",
}
# Header-block fields (text on the same line): the allergies, inside the header block, end at the next one.
BLOCK_FIELDS: tuple[str, ...] = ("Name", "Admission Date", "Date of Birth", "Service", "Attending")

ADMISSION_SECTIONS: tuple[str, ...] = (
    "chief_complaint", "present_illness", "medical_history", "medications_on_admission",
    "allergies", "physical_exam", "family_history", "social_history",
)
REQUIRED_ANY: tuple[str, ...] = ("chief_complaint", "present_illness", "medical_history")
TITLES: dict[str, str] = {
    "chief_complaint": "CHIEF COMPLAINT",
    "present_illness": "PRESENT ILLNESS",
    "medical_history": "MEDICAL HISTORY",
    "medications_on_admission": "MEDICATION ON ADMISSION",
    "allergies": "ALLERGIES",
    "physical_exam": "PHYSICAL EXAM",
    "family_history": "FAMILY HISTORY",
    "social_history": "SOCIAL HISTORY",
}
LEAKAGE_SECTIONS: frozenset[str] = frozenset(SECTION_HEADERS.values()) - set(ADMISSION_SECTIONS)

# A candidate header line: a capitalised run of letters, spaces and underscores,
# then a colon and nothing else. Led by a literal newline (the text is searched
# as "\n" + text) and possessive, it costs one quick pass; `re.split` hands back
# (line, name, text up to the next candidate) triples, and only names found in
# SECTION_HEADERS start a section ("ADMISSION EXAM:" does not), which is far
# cheaper than trying every header at every line.
_HEADER_LINE = re.compile(r"(\n[ \t]*+([A-Z][A-Za-z_ ]*+):[ \t]*+)(?=\n|\Z)")
_BLOCK_FIELD = re.compile(r"^[ \t]*(?:" + "|".join(re.escape(f) for f in BLOCK_FIELDS) + r"):", re.MULTILINE)
_DISCHARGE_EXAM = re.compile(
    r"^[ \t=*#_\-]*(?:"
    r"(?:discharge|d/c|dc)\b[^\n:]{0,30}?\b(?:exam|examination|pe|physical|vitals|vs)\b"
    r"|(?:physical\s+)?(?:exam|examination|pe|vitals|vs)\b[^\n:]{0,20}?"
    r"\b(?:on|at|upon|prior\s+to|before|day\s+of)\s+(?:discharge|d/c|dc)\b"
    r"|(?:on|at|upon)\s+discharge\b"
    r"|discharge\s*:"
    r")",
    re.IGNORECASE | re.MULTILINE,
)
_ADMISSION_EXAM = re.compile(
    r"^[ \t=*#_\-]*(?:admission|admit|on\s+admission|upon\s+admission|at\s+admission)\b",
    re.IGNORECASE | re.MULTILINE,
)
_CONTENT = re.compile(r"[A-Za-z0-9]")  # a section of only "___" and punctuation says nothing


class AdmissionNote(NamedTuple):
    """An admission note and the section keys it holds, in note order."""

    text: str
    sections: tuple[str, ...]


def split_sections(text: str, wanted: frozenset[str] | None = None) -> dict[str, str]:
    """Raw bodies of the template sections of a discharge summary, by key (repeats joined by a newline).

    `wanted` limits the work to some keys. Text before the first header (the
    header block's first lines) belongs to no section; the allergies, which sit
    inside the header block, end at the next header-block field ("Attending:").
    """
    parts = _HEADER_LINE.split("\n" + text)
    found: dict[str, list[str]] = {}
    body: list[str] | None = None
    for i in range(1, len(parts), 3):
        key = SECTION_HEADERS.get(parts[i + 1].rstrip())
        if key is None:  # "ADMISSION EXAM:", "Labs:" ... stay inside the current section
            if body is not None:
                body += (parts[i], parts[i + 2])
        elif wanted is None or key in wanted:
            body = found.setdefault(key, [])
            if body:
                body.append("\n")
            body.append(parts[i + 2])
        else:
            body = None
    sections = {key: "".join(pieces) for key, pieces in found.items()}
    allergies = sections.get("allergies")
    if allergies is not None:
        field = _BLOCK_FIELD.search(allergies)
        if field is not None:
            sections["allergies"] = allergies[: field.start()]
    return sections


def admission_exam(exam: str) -> str:
    """The admission part of a physical-exam section: everything before the discharge exam.

    If the discharge exam comes first and an admission exam follows, the admission exam is kept.
    """
    discharge = _DISCHARGE_EXAM.search(exam)
    if discharge is None:
        return exam
    if discharge.start() == 0 or not _CONTENT.search(exam, 0, discharge.start()):
        admission = _ADMISSION_EXAM.search(exam, discharge.end())
        if admission is None:
            return ""
        after = _DISCHARGE_EXAM.search(exam, admission.end())
        return exam[admission.start(): after.start() if after else len(exam)]
    return exam[: discharge.start()]


def clean(body: str) -> str:
    """Drop trailing blanks, separator lines and empty lines; keep the remaining line breaks."""
    return "\n".join([line.rstrip() for line in body.split("\n") if line.strip()]).strip()


def has_content(body: str) -> bool:
    return _CONTENT.search(body) is not None


def admission_note(
    text: str,
    sections: tuple[str, ...] = ADMISSION_SECTIONS,
    require_any: tuple[str, ...] = REQUIRED_ANY,
) -> AdmissionNote | None:
    """The admission note of a discharge summary, or None when none of `require_any` has content."""
    raw = split_sections(text or "", _as_set(sections))
    parts: list[str] = []
    kept: list[str] = []
    for key in sections:
        body = raw.get(key)
        if body is None:
            continue
        if key == "physical_exam":
            body = admission_exam(body)
        body = clean(body)
        if _CONTENT.search(body) is None:
            continue
        parts.append(f"{TITLES.get(key) or key.replace('_', ' ').upper()}: {body}")
        kept.append(key)
    if not any(key in kept for key in require_any):
        return None
    return AdmissionNote("\n\n".join(parts), tuple(kept))


@lru_cache(maxsize=16)
def _as_set(keys: tuple[str, ...]) -> frozenset[str]:
    return frozenset(keys)
