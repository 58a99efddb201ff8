"""Admission notes as rows of VERL's RLHFDataset (verl 0.9.x).

VERL reads `prompt` as chat messages and applies the model's chat template
itself; the reward function receives `ground_truth` and `extra_info`. The gold
code is stored as a one-element list: the published scorer silently degrades to
a first-letter check when given a bare string. `extra_info.prefill` tells the
scorer which text the assistant turn was prefilled with.

The prompt is `deepicd.prompts.task.messages(note)`. A split of MIMIC-IV holds
tens of thousands of notes, so when `messages` places the note verbatim into
fixed text (checked on a probe note) the columns are assembled by pyarrow
instead of one Python string per row; otherwise each row calls `messages`.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from deepicd.prompts import task
from deepicd.split_tables import MESSAGE, VERL_SCHEMA

ABILITY = "clinical-coding"

_MARK = "\x00deepicd-note\x00"
_PROBE = "CHIEF COMPLAINT: {x} 100% \\n ___\n\nPRESENT ILLNESS: ü"


@lru_cache(maxsize=1)
def _templates() -> tuple[tuple[str, str, str | None], ...] | None:
    """(role, text before the note, text after it or None for a fixed message), if `messages` allows it."""
    parts = []
    for message in task.messages(_MARK):
        pieces = message["content"].split(_MARK)
        if len(pieces) > 2:
            return None
        parts.append((message["role"], pieces[0], pieces[1] if len(pieces) == 2 else None))
    rebuilt = [{"role": role, "content": before if after is None else before + _PROBE + after}
               for role, before, after in parts]
    return tuple(parts) if rebuilt == task.messages(_PROBE) else None


def _prompt(notes: pa.Array) -> pa.Array:
    n = len(notes)
    templates = _templates()
    if templates is None:
        rows = [task.messages(note) for note in notes.to_pylist()]
        return pa.array(rows, pa.list_(MESSAGE))
    per_message = [
        pa.array([before] * n, pa.string()) if after is None
        else pc.binary_join_element_wise(before, notes, after, "")
        for _, before, after in templates
    ]
    k = len(templates)
    # row-major: message j of row i sits at i * k + j
    order = (np.arange(k)[None, :] * n + np.arange(n)[:, None]).ravel()
    contents = pa.concat_arrays(per_message).take(pa.array(order)) if n else pa.array([], pa.string())
    roles = pa.array([role for role, _, _ in templates], pa.string()).take(pa.array(np.tile(np.arange(k), n)))
    return pa.ListArray.from_arrays(
        pa.array(np.arange(0, k * n + 1, k, dtype=np.int32)),
        pa.StructArray.from_arrays([roles, contents], fields=list(MESSAGE)),
    )


def table(
    split: str,
    notes: Sequence[str] | pa.Array,
    first_codes: Sequence[str] | pa.Array,
    hadm_ids: Sequence[int] | pa.Array,
    subject_ids: Sequence[int] | pa.Array,
    data_source: str,
    first_index: int = 0,
) -> pa.Table:
    """VERL rows of one split (or of a chunk of it whose first row is number `first_index`)."""
    notes = _array(notes, pa.string())
    n = len(notes)
    truth = pa.ListArray.from_arrays(pa.array(np.arange(n + 1, dtype=np.int32)), _array(first_codes, pa.string()))
    reward = pa.StructArray.from_arrays([pa.array(["rule"] * n, pa.string()), truth],
                                        fields=list(VERL_SCHEMA.field("reward_model").type))
    extra = pa.StructArray.from_arrays(
        [pa.array([split] * n, pa.string()), pa.array(np.arange(first_index, first_index + n, dtype=np.int64)),
         _array(hadm_ids, pa.int64()), _array(subject_ids, pa.int64()), notes,
         pa.array([task.PREFILL] * n, pa.string())],
        fields=list(VERL_SCHEMA.field("extra_info").type),
    )
    columns = [pa.array([data_source] * n, pa.string()), _prompt(notes), pa.array([ABILITY] * n, pa.string()),
               reward, extra]
    return pa.Table.from_arrays(columns, schema=VERL_SCHEMA)


def _array(values, kind: pa.DataType) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        return values.cast(kind) if values.type != kind else values
    return pa.array(values, kind)
