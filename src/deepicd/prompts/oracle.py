"""The oracle prompt: a teacher that knows the answer writes the reasoning a student should learn.

Distillation (DeepICD-R1, section on SFT data) shows the teacher the admission
note *and* the gold code, with the code's ontology text and its chapter's coding
guidelines, and asks for reasoning that works the diagnosis out of the note as if
the code were unknown, naming it only in the final answer. Knowing the answer
keeps traces on target; forbidding its early mention keeps them from being a
restatement of it (the filters check that, too).

The assistant turn is prefilled with `<think>`, exactly like the task prompt, so
teacher output has the shape the student will produce. Bump `VERSION` whenever the
wording changes: traces and manifests record it, and a rerun refuses to mix versions.
"""

from __future__ import annotations

from deepicd import icd
from deepicd.prompts.task import PREFILL

VERSION = "oracle-v1"

SYSTEM = (
    "You are a senior clinical coder who writes worked examples for trainees. You are given a hospital "
    "admission note, the ICD-10-CM code that was finally assigned as the patient's primary discharge "
    "diagnosis, what the ICD-10-CM tabular list says about that code, and the coding guidelines of its "
    "chapter. Write the reasoning a careful coder would follow from the note alone to arrive at that "
    "diagnosis: the presenting complaint, the relevant history, examination and test findings, the "
    "conditions they suggest, why the most likely one wins over the others, and how the specific code "
    "follows from the details in the note and the guidelines. Reason as if you did not know the answer: "
    "inside the reasoning never write the code, never quote it with or without its dot, and never say that "
    "it was given to you. Put the reasoning inside <think> and </think>. After </think>, write the code "
    "without the dot inside <diagnosis> and </diagnosis>, and nothing else."
)

USER = (
    "Admission note:\n\n{note}\n\n"
    "Primary discharge diagnosis (known to you only; do not reveal it in the reasoning): {dotted}\n\n"
    "ICD-10-CM tabular list entry of this code and its parents:\n{tabular}\n\n"
    "Coding guidelines for {chapter}:\n{guidelines}\n\n"
    "Write your reasoning inside <think> and </think> as if you were working the diagnosis out of the note, "
    "then finish with exactly <diagnosis>{code}</diagnosis>."
)


def dotted(code: str) -> str:
    """The code as coders write it, with the dot after the category (M5116 -> M51.16)."""
    code = icd.normalize(code)
    return code if len(code) <= 3 else f"{code[:3]}.{code[3:]}"


def chapter_label(code: str) -> str:
    chapter = icd.chapter(code)
    if chapter is None:
        return "its chapter (unknown for this code)"
    return f"chapter {chapter.number} ({chapter.roman}, {chapter.title}, {chapter.range})"


def messages(note: str, gold: str, guidelines: str) -> list[dict[str, str]]:
    """The oracle chat messages (system + user) for one note; the assistant turn is prefilled with PREFILL.

    `guidelines` is the chapter excerpt to show (see `deepicd.guidelines.code_excerpt`);
    it is passed in rather than read here so that prompts stay free of file I/O.
    """
    code = icd.normalize(gold)
    user = USER.format(
        note=note.strip(),
        dotted=dotted(code),
        tabular=icd.tabular_text(code) or f"{code}: no tabular entry available.",
        chapter=chapter_label(code),
        guidelines=guidelines.strip() or "(no guideline text available for this chapter)",
        code=code,
    )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


__all__ = ["PREFILL", "SYSTEM", "USER", "VERSION", "chapter_label", "dotted", "messages"]
