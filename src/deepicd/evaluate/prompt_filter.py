"""Dropping test notes whose prompt is too long, and saying how many were dropped.

The published evaluation meant to drop every test note whose prompt exceeds
2,048 tokens. It measured `len()` of the tokenizer's output, which is the
number of fields of that output (input_ids, attention_mask: 2), not of tokens,
so in fact it kept every note. `max_prompt_tokens` does what was meant, on the
prompt the model really sees (chat template, generation prompt and prefill), and
the count of dropped notes goes into metrics.json, report.md and the console, so
a filtered evaluation can never pass for a complete one. 0 keeps every note.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from deepicd.errors import UserError
from deepicd.evaluate.config import EvaluateConfig


@dataclass
class FilterOutcome:
    """What the filter did: the limit, how many notes it saw and dropped, and which (first few)."""

    max_prompt_tokens: int
    notes: int
    dropped: int = 0
    dropped_ids: list[str] = field(default_factory=list)
    longest: int | None = None  # longest prompt seen, in tokens (None when not measured)

    def as_dict(self) -> dict:
        return {
            "max_prompt_tokens": self.max_prompt_tokens,
            "notes": self.notes,
            "dropped": self.dropped,
            "kept": self.notes - self.dropped,
            "dropped_examples": self.dropped_ids[:20],
            "longest_prompt_tokens": self.longest,
        }

    def message(self) -> str:
        if not self.max_prompt_tokens:
            return ""
        return (
            f"prompt filter: dropped {self.dropped} of {self.notes} notes whose prompt exceeds "
            f"{self.max_prompt_tokens} tokens (max_prompt_tokens)"
        )


def measure(texts: Sequence[str], config: EvaluateConfig) -> np.ndarray:
    """Token count of each note's rendered prompt, with the tokenizer of the evaluated model."""
    from deepicd.evaluate import prompting
    from deepicd.generate.base import GenerationRequest
    from deepicd.generate.render import prompt_text
    from deepicd.models import load_tokenizer

    source = config.generator.tokenizer_path or config.generator.model
    try:
        tokenizer = load_tokenizer(source, purpose="generate")
    except UserError as exc:
        raise UserError(f"max_prompt_tokens={config.max_prompt_tokens} needs the model's tokenizer: {exc}") from None
    messages = prompting.messages(config)
    rendered = [prompt_text(tokenizer, GenerationRequest("", messages(text), config.prefill)) for text in texts]
    lengths = np.zeros(len(rendered), dtype=np.int64)
    batch = 256
    for start in range(0, len(rendered), batch):
        encoded = tokenizer(rendered[start : start + batch], add_special_tokens=False)["input_ids"]
        lengths[start : start + len(encoded)] = [len(ids) for ids in encoded]
    return lengths


def _outcome(ids: Sequence[str], lengths: np.ndarray, limit: int) -> tuple[np.ndarray, FilterOutcome]:
    keep = lengths <= limit
    dropped = [str(ids[i]) for i in np.flatnonzero(~keep)]
    longest = int(lengths.max()) if len(lengths) else None
    return keep, FilterOutcome(limit, len(ids), len(dropped), dropped, longest)


def filter_notes(notes: pd.DataFrame, config: EvaluateConfig) -> tuple[pd.DataFrame, FilterOutcome]:
    """--model mode: the notes whose prompt fits in `max_prompt_tokens` (all when it is 0)."""
    if not config.max_prompt_tokens:
        return notes, FilterOutcome(0, len(notes))
    keys = notes["hadm_id"].astype(str).tolist()
    keep, outcome = _outcome(keys, measure(notes["text"].tolist(), config), config.max_prompt_tokens)
    if not keep.any():
        raise UserError(
            f"every one of the {len(notes)} notes has a prompt longer than max_prompt_tokens="
            f"{config.max_prompt_tokens} (longest {outcome.longest} tokens); raise it or set it to 0"
        )
    return notes[keep].reset_index(drop=True), outcome


def filter_predictions(predictions, config: EvaluateConfig, source: str):
    """--predictions mode: rows whose recorded `prompt_tokens` fit (generations.jsonl records them)."""
    from deepicd.evaluate.inputs import Predictions

    if not config.max_prompt_tokens:
        return predictions, FilterOutcome(0, len(predictions))
    lengths = predictions.prompt_tokens or []
    unknown = [predictions.ids[i] for i, n in enumerate(lengths) if n is None] if lengths else predictions.ids[:1]
    if unknown:
        raise UserError(
            f"max_prompt_tokens={config.max_prompt_tokens} needs each row's prompt length, but {source} has no "
            f"'prompt_tokens' for id {unknown[0]}; score the generations.jsonl of a --model run, or set max_prompt_tokens=0"
        )
    keep, outcome = _outcome(predictions.ids, np.asarray(lengths, dtype=np.int64), config.max_prompt_tokens)
    if not keep.any():
        raise UserError(f"every row of {source} has a prompt longer than max_prompt_tokens={config.max_prompt_tokens}")
    rows = np.flatnonzero(keep).tolist()
    kept = Predictions(
        [predictions.ids[i] for i in rows],
        predictions.gold[rows],
        [predictions.completions[i] for i in rows],
        [lengths[i] for i in rows],
    )
    return kept, outcome
