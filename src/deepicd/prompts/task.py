"""The task prompt: an admission note in, reasoning and one ICD-10-CM code out.

As in DeepICD-R1, the assistant turn is prefilled with `<think>`, so a model's
completion starts inside its reasoning; every scorer prepends the prefill back
before parsing. Bump `VERSION` whenever the wording changes: manifests record it.
"""

from __future__ import annotations

VERSION = "task-v1"
PREFILL = "<think>"

SYSTEM = (
    "You are an experienced clinical coder. You read a hospital admission note and decide which "
    "diagnosis will be coded first when the patient is discharged. Think it through step by step "
    "inside <think> and </think>: the presenting complaint, the relevant history and findings, and the "
    "conditions they point to. Then write exactly one ICD-10-CM code, without the dot, inside "
    "<diagnosis> and </diagnosis>, for example <diagnosis>I214</diagnosis>."
)

USER = "Admission note:\n\n{note}\n\nWhat is the primary ICD-10-CM discharge diagnosis?"


def messages(note: str) -> list[dict[str, str]]:
    """The chat messages of the task (system + user), without the assistant prefill."""
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER.format(note=note)}]


def render(tokenizer, note: str) -> str:
    """The full prompt text a generator continues: chat template, generation prompt, then the prefill."""
    text = tokenizer.apply_chat_template(messages(note), tokenize=False, add_generation_prompt=True)
    return text + PREFILL
