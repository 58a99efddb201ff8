"""Sampling rules every backend applies the same way.

Greedy decoding (temperature 0) gives one answer however often it is asked, and
several engines refuse `n > 1` without sampling; so a greedy request is decoded
once and its completion repeated `n` times. Each backend then returns exactly
`n` completions per request, which the scorers rely on.
"""

from __future__ import annotations

from deepicd.commands import UserError
from deepicd.generate.base import GenerationRequest, GenerationResult, SamplingConfig


def validate(sampling: SamplingConfig) -> SamplingConfig:
    """Raise UserError naming the sampling setting at fault."""
    if sampling.n < 1:
        raise UserError(f"invalid sampling setting 'n': must be at least 1, got {sampling.n}")
    if sampling.max_new_tokens < 1:
        raise UserError(f"invalid sampling setting 'max_new_tokens': must be at least 1, got {sampling.max_new_tokens}")
    if sampling.temperature < 0:
        raise UserError(f"invalid sampling setting 'temperature': must not be negative, got {sampling.temperature}")
    if not 0.0 < sampling.top_p <= 1.0:
        raise UserError(f"invalid sampling setting 'top_p': must be in (0, 1], got {sampling.top_p}")
    return sampling


def is_greedy(sampling: SamplingConfig) -> bool:
    return sampling.temperature == 0


def draws(sampling: SamplingConfig) -> int:
    """How many sequences to actually decode per prompt."""
    return 1 if is_greedy(sampling) else sampling.n


def widen(completions: list[str], counts: list[int], n: int) -> tuple[list[str], list[int]]:
    """Repeat a single greedy completion (and its token count) up to `n` copies."""
    if len(completions) == 1 and n > 1:
        return completions * n, (counts * n if counts else counts)
    return completions, counts


def failed(request: GenerationRequest, message: str) -> GenerationResult:
    """The result of a request the backend gave up on: no completions, the reason in `error`."""
    return GenerationResult(key=request.key, completions=[], error=message)
