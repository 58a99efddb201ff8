"""The task prompt: an admission note in, reasoning and one ICD-10-CM code out.

The instructions carry those of DeepICD-R1's published prompt in substance, in
our own words: predict the main diagnosis the stay will be coded with at
discharge from the admission note alone, reasoning forward (complications,
procedures, likely outcomes, coding practice) rather than stopping at what is
already diagnosed; reason first inside `<think>`, then give exactly one code
inside `<diagnosis>`, nothing outside the tags, no invented codes.

The format example writes the word `CODE`, never a real code: an
untrained policy copies whatever code the example shows (the earlier version
showed `I214`), which would bias both its first rollouts and a zero-shot
baseline towards that code. `tests/test_task_prompt.py` checks every
code-shaped token of the text against the ICD-10-CM release.

Length (version task-v2). System and user turns around the note, in Qwen2.5's
ChatML layout with the generation prompt and the `<think>` prefill, take 328
tokens of the Qwen2.5 vocabulary; the published prompt takes 463 (task-v1 took
132; method in docs/distill-sft.md). Under GRPO's 2,048-token prompt filter
(VERL's `filter_overlong_prompts`), notes of up to 1,720 tokens pass with this
prompt and up to 1,585 with the published one: notes of 1,586-1,720 tokens are
trained on here but were dropped there. `grpo.max_prompt_length=1913` drops
about the same notes as the published prompt did. (The published evaluation
meant to apply the same filter but compared the length of a two-field dict, so
it kept every note; see docs/deviations.md.)

The assistant turn is prefilled with `<think>`, so a model's
completion starts inside its reasoning; every scorer prepends the prefill back
before parsing. Bump `VERSION` whenever the wording changes: manifests record it.
"""

from __future__ import annotations

VERSION = "task-v2"
PREFILL = "<think>"

SYSTEM = (
    "You are a clinician who also codes hospital stays. From the note written when a patient was admitted, "
    "and from nothing else, you predict the main diagnosis the stay will be coded with when the patient is "
    "discharged, as one ICD-10-CM code. Do not stop at what is already diagnosed on admission: reason forward "
    "about how the stay is likely to unfold (complications, procedures, the likely course given the patient's "
    "conditions and risk factors) and about which code coders usually assign as the main diagnosis of such a "
    "stay.\n\n"
    "Answer in exactly this layout:\n"
    "<think>\n"
    "Your reasoning, step by step: the complaints, history and findings in the note that matter, the "
    "diagnoses they establish or strongly suggest, how the stay will probably develop, and why one diagnosis "
    "is the most likely main one. Support each step with the note, clinical knowledge or coding practice, and "
    "say where you are unsure.\n"
    "</think>\n"
    "<diagnosis>CODE</diagnosis>\n\n"
    "Rules:\n"
    "- Reason first, inside <think> and </think>; then answer inside <diagnosis> and </diagnosis>.\n"
    "- Write one <think> block and one <diagnosis> block, for a single diagnosis.\n"
    "- Write nothing outside these tags.\n"
    "- Replace CODE with one valid ICD-10-CM code written without the dot, and nothing else: no description, "
    "no code of another coding system, no made-up code."
)

USER = (
    "Admission note:\n\n{note}\n\n"
    "Which ICD-10-CM code will most likely be this patient's main diagnosis at discharge?"
)


def messages(note: str) -> list[dict[str, str]]:
    """The chat messages of the task (system + user), without the assistant prefill."""
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER.format(note=note)}]


def render(tokenizer, note: str) -> str:
    """The full prompt text a generator continues: chat template, generation prompt, then the prefill."""
    text = tokenizer.apply_chat_template(messages(note), tokenize=False, add_generation_prompt=True)
    return text + PREFILL
