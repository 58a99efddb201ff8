"""Which prompt an evaluation sends and how it reads the answers: the reasoning task or code-only.

The two must always travel together: completions of the code-only prompt have
no think block, so reading them with the reasoning parser would score every one
as "no answer", and the other way round a reasoning trace that mentions codes
would be read for the first code it names. `EvaluateConfig.prompt` picks both.
"""

from __future__ import annotations

from typing import Callable

from deepicd.evaluate.config import EvaluateConfig


def messages(config: EvaluateConfig) -> Callable[[str], list[dict[str, str]]]:
    """The function that turns a note into chat messages for the configured prompt."""
    from deepicd.prompts import code_only, task

    return code_only.messages if config.prompt == "code-only" else task.messages


def version(config: EvaluateConfig) -> str:
    """The version string of the configured prompt, for manifests and the generation settings."""
    from deepicd.prompts import code_only, task

    return code_only.VERSION if config.prompt == "code-only" else task.VERSION


def reader(config: EvaluateConfig) -> Callable[[str], str | None]:
    """completion -> parsed answer (None: no answer), for the configured prompt."""
    if config.prompt == "code-only":
        from deepicd.prompts.code_only import parse

        return parse
    from deepicd.rewards.completion import parse_completion

    prefill = config.prefill
    return lambda text: parse_completion(text, prefill).prediction
