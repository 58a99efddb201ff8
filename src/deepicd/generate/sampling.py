"""Sampling rules every backend applies the same way.

Greedy decoding (temperature 0) gives one answer however often it is asked, and
several engines refuse `n > 1` without sampling; so a greedy request is decoded
once and its completion repeated `n` times. Each backend then returns exactly
`n` completions per request, which the scorers rely on.

Every backend states every filter (top_p, top_k, min_p, repetition penalty) on
every call, "off" included: an engine fills what it is not told from the
model's generation_config.json, so an unstated filter is the model's choice,
not ours. `filters` is the one place that decides their values; the backends
only translate it into their engine's spelling.
"""

from __future__ import annotations

from deepicd.generate.base import GenerationRequest, GenerationResult, SamplingConfig


def is_greedy(sampling: SamplingConfig) -> bool:
    return sampling.temperature == 0


def draws(sampling: SamplingConfig) -> int:
    """How many sequences to actually decode per prompt."""
    return 1 if is_greedy(sampling) else sampling.n


def filters(sampling: SamplingConfig) -> dict:
    """temperature, top_p, top_k (None when off), min_p and repetition_penalty as every backend must apply them.

    Greedy decoding takes the most likely token whatever top_p, top_k and min_p
    say, so they are neutral then; the repetition penalty changes which token is
    most likely and therefore applies to greedy decoding too.
    """
    greedy = is_greedy(sampling)
    top_k = sampling.top_k if sampling.top_k > 0 and not greedy else None
    return {
        "temperature": 0.0 if greedy else sampling.temperature,
        "top_p": 1.0 if greedy else sampling.top_p,
        "top_k": top_k,
        "min_p": 0.0 if greedy else sampling.min_p,
        "repetition_penalty": sampling.repetition_penalty,
    }


def transformers_settings(sampling: SamplingConfig) -> dict:
    """GenerationConfig values that pin transformers' decoding to `sampling`, whatever the model's defaults.

    transformers fills every GenerationConfig value left at None from the
    model's generation config, so each filter is given a value, "off" included.
    Greedy decoding uses the values transformers treats as unset for the
    sampling-only filters, so that it logs no warnings about unused flags.
    Used by the transformers backend and sent to `transformers serve`.
    """
    chosen = filters(sampling)
    if is_greedy(sampling):
        choice = {"do_sample": False, "temperature": 1.0, "top_p": 1.0, "top_k": 50}
    else:
        choice = {
            "do_sample": True,
            "temperature": chosen["temperature"],
            "top_p": chosen["top_p"],
            "top_k": chosen["top_k"] or 0,
            "min_p": chosen["min_p"],
        }
    return {
        **choice,
        "repetition_penalty": chosen["repetition_penalty"],
        "typical_p": 1.0,
        "no_repeat_ngram_size": 0,
    }


def widen(completions: list[str], counts: list[int], n: int) -> tuple[list[str], list[int]]:
    """Repeat a single greedy completion (and its token count) up to `n` copies."""
    if len(completions) == 1 and n > 1:
        return completions * n, (counts * n if counts else counts)
    return completions, counts


def failed(request: GenerationRequest, message: str) -> GenerationResult:
    """The result of a request the backend gave up on: no completions, the reason in `error`."""
    return GenerationResult(key=request.key, completions=[], error=message)
