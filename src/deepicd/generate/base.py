"""The one interface every generation backend implements (vLLM, OpenAI-compatible server, transformers).

Distillation, evaluation and the demo all generate the same way: chat messages
plus an assistant prefill in, `n` sampled continuations out. Results are
yielded as they finish (possibly out of order, keyed by `key`), so a caller can
append each one to a resumable JSONL file the moment it exists and lose nothing
on a crash.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Iterator, Protocol

from deepicd.schema import require


@dataclass
class SamplingConfig:
    """Sampling settings shared by every backend (paper distillation: 0.9, 1024 tokens, seed 42).

    The filters below default to "off" and every backend sends them explicitly:
    left unset, `vllm serve` and transformers fill them from the model's
    generation_config.json (Qwen2.5-Instruct: top_k 20, repetition_penalty
    1.05), and the distribution sampled would not be the one configured here.
    """

    temperature: float = 0.9  # 0: greedy
    top_p: float = 1.0  # nucleus sampling (1: off)
    max_new_tokens: int = 1024  # tokens generated per completion at most
    n: int = 1  # completions per prompt
    seed: int = 42  # seeds the sampling, per request where the backend allows it
    top_k: int = 0  # keep the k most likely tokens; 0 (or -1) is off
    min_p: float = 0.0  # drop tokens below min_p x the top token's probability; 0 is off
    repetition_penalty: float = 1.0  # penalise tokens already in the prompt or the output; 1 is off

    def __post_init__(self) -> None:
        where = "sampling setting"
        require(self.n >= 1, where, "n", "must be at least 1", self.n)
        require(self.max_new_tokens >= 1, where, "max_new_tokens", "must be at least 1", self.max_new_tokens)
        require(self.temperature >= 0, where, "temperature", "must not be negative", self.temperature)
        require(0.0 < self.top_p <= 1.0, where, "top_p", "must be in (0, 1]", self.top_p)
        whole = isinstance(self.top_k, int) and not isinstance(self.top_k, bool)
        require(whole and self.top_k >= -1, where, "top_k", "must be a whole number of tokens, or 0 (or -1) for off",
                self.top_k)
        require(0.0 <= self.min_p <= 1.0, where, "min_p", "must be in [0, 1], 0 for off", self.min_p)
        require(self.repetition_penalty > 0, where, "repetition_penalty", "must be positive, 1.0 for off",
                self.repetition_penalty)


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt: `key` identifies it in the output (e.g. the hadm_id)."""

    key: str
    messages: list[dict[str, str]]
    prefill: str = "<think>"


@dataclass
class GenerationResult:
    """The `n` continuations of one request, each the text generated *after* the prefill."""

    key: str
    completions: list[str]
    prompt_tokens: int = 0
    completion_tokens: list[int] = field(default_factory=list)
    error: str | None = None  # set when the backend gave up on this request


class Generator(Protocol):
    """A generation backend. `close()` releases servers, processes or GPU memory."""

    def generate(self, requests: Iterable[GenerationRequest], sampling: SamplingConfig) -> Iterator[GenerationResult]: ...

    def close(self) -> None: ...
