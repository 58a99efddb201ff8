"""The code-only prompt: an admission note in, one ICD-10-CM code out, no reasoning.

The paper's Table 4 compares a student fine-tuned on reasoning plus answer with
one fine-tuned on the answer alone. The second needs a prompt that asks for the
answer alone, training targets that hold only `<diagnosis>CODE</diagnosis>`
(`deepicd sft-data`), and a reading of its output that expects no think block
(`parse`). Nothing is prefilled: the assistant turn starts with the answer.
Its instructions are the task prompt's (`prompts.task`) minus the reasoning; like
it, the format example writes the word CODE, never a real code, which an
untrained model would copy. Bump `VERSION` whenever the wording changes:
manifests record it.
"""

from __future__ import annotations

import re

from deepicd import icd

VERSION = "code-only-v1"
PREFILL = ""

SYSTEM = (
    "You are a clinician who also codes hospital stays. From the note written when a patient was admitted, "
    "and from nothing else, you predict the main diagnosis the stay will be coded with when the patient is "
    "discharged, as one ICD-10-CM code, taking into account how such a stay usually unfolds and which code "
    "coders usually assign as its main diagnosis.\n\n"
    "Answer with the code alone, in exactly this layout:\n"
    "<diagnosis>CODE</diagnosis>\n\n"
    "Rules:\n"
    "- Do not explain or justify the answer; write no reasoning and nothing outside the tags.\n"
    "- Replace CODE with one valid ICD-10-CM code written without the dot, and nothing else: no description, "
    "no code of another coding system, no made-up code."
)

USER = (
    "Admission note:\n\n{note}\n\n"
    "Which ICD-10-CM code will most likely be this patient's main diagnosis at discharge? Give the code only."
)

_OPEN, _CLOSE = "<diagnosis>", "</diagnosis>"
# A code written anywhere in free text, with or without its dot; letters and digits must not touch it.
_CODE_IN_TEXT = re.compile(r"(?<![A-Za-z0-9.])([A-Z][0-9][0-9A-Z](?:\.?[0-9A-Z]{1,4})?)(?![A-Za-z0-9])")


def messages(note: str) -> list[dict[str, str]]:
    """The chat messages of the code-only task (system + user), nothing prefilled."""
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER.format(note=note)}]


def completion(code: str) -> str:
    """The assistant text an outcome-only student learns: the answer block and nothing else."""
    return f"<diagnosis>{icd.normalize(code)}</diagnosis>"


def parse(text: str) -> str | None:
    """The answer of a code-only completion, normalised like the reasoning task's (stripped, no dots).

    The text of the first `<diagnosis>…</diagnosis>` block wherever it stands
    (nothing is required around it: there is no think block to pair it with);
    else the first code written anywhere in the text, as the published code-only
    evaluation reads answers; else None (no answer). Linear in the text length.
    """
    start = text.find(_OPEN)
    if start >= 0:
        end = text.find(_CLOSE, start + len(_OPEN))
        if end >= 0:
            return icd.normalize(text[start + len(_OPEN) : end])
    match = _CODE_IN_TEXT.search(text)
    return icd.normalize(match.group(1)) if match else None
