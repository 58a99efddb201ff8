"""Helpers of the SFT tests: synthetic admissions, a teacher that writes short well-formed traces, and a
greedy generation loop that measures how often a model answers in the task's format."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
from split_writer import notes_frame

from deepicd.generate.base import GenerationResult
from deepicd.prompts import task
from deepicd.rewards.completion import parse_completion

# code -> (complaint, finding, conclusion): short and distinct, so a tiny model can pick them up.
CASES = {
    "I214": ("chest pain", "elevated troponin", "a heart attack"),
    "J189": ("cough and fever", "a lobar infiltrate", "pneumonia"),
    "N390": ("painful urination", "cloudy urine", "a urinary infection"),
    "K3580": ("right lower abdominal pain", "rebound tenderness", "appendicitis"),
    "M5116": ("low back pain", "leg numbness", "a slipped lumbar disc"),
    "E1165": ("thirst", "high glucose", "diabetes out of control"),
}
_GOLD = re.compile(r"<diagnosis>([A-Z0-9]+)</diagnosis>\.?\s*$")


def admissions(count: int, first_id: int) -> pd.DataFrame:
    codes = [list(CASES)[i % len(CASES)] for i in range(count)]
    texts = []
    for i, code in enumerate(codes):
        complaint, finding, _ = CASES[code]
        texts.append(
            f"CHIEF COMPLAINT: {complaint}\n\nPRESENT ILLNESS: patient {first_id + i} reports {complaint} "
            f"for {2 + i % 5} days; work-up shows {finding}.\n\nMEDICAL HISTORY: hypertension"
        )
    return notes_frame(texts, codes, first_id=first_id)


class TraceTeacher:
    """A distillation teacher: reads the gold code off the oracle prompt and explains it in one sentence."""

    def __init__(self, config=None) -> None:
        self.config = config

    def generate(self, requests, sampling):
        for request in requests:
            user = request.messages[-1]["content"]
            code = _GOLD.search(user).group(1)
            complaint, finding, conclusion = CASES[code]
            trace = f"\nThe patient has {complaint} and {finding}, which points to {conclusion}.\n"
            yield GenerationResult(key=request.key, completions=[f"{trace}</think>\n<diagnosis>{code}</diagnosis>"])

    def close(self) -> None:
        pass


def format_rate(model_dir: str | Path, notes: list[str], max_new_tokens: int = 48) -> tuple[float, list[str]]:
    """Share of greedy completions that are one well-formed pair with a valid code, and the completions."""
    import torch

    from deepicd import models

    model, tokenizer = models.load(model_dir, purpose="generate", dtype="float32", device="cpu")
    prompts = [task.render(tokenizer, note) for note in notes]
    batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        output = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False)
    texts = tokenizer.batch_decode(output[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    good = 0
    for text in texts:
        parsed = parse_completion(text, task.PREFILL)
        good += int(len(parsed.pairs) == 1 and bool(parsed.trace and parsed.trace.strip()) and parsed.is_valid())
    return good / len(texts), texts
