"""Helpers shared by the evaluation tests: completions, JSONL files and preprocess-shaped tables."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from split_writer import notes_frame


def answer(code: str, think: str = "reasoning") -> str:
    """A well-formed completion (text after the <think> prefill) answering `code`."""
    return f"{think}</think>\n<diagnosis>{code}</diagnosis>"


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def split_table(first_codes: list[str], start: int = 1000) -> pd.DataFrame:
    count = len(first_codes)
    return notes_frame([f"CHIEF COMPLAINT: complaint number {i}\n\nPRESENT ILLNESS: history {i}" for i in range(count)],
                       first_codes, hadm_ids=[start * 10 + i for i in range(count)],
                       subject_ids=[start + i for i in range(count)], codes=[[code, "Z794"] for code in first_codes])


# Train: I214 x4, J189 x3, K359 x2, N390 x1 -> majority I214 (chapter IX, category I21).
TRAIN = ["I214", "I214", "I214", "I214", "J189", "J189", "J189", "K359", "K359", "N390"]
TEST = ["I214", "J189", "J189", "K359", "N390", "I214"]
