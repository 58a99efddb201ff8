"""Typed settings of `deepicd evaluate`. Presets live in `configs/evaluate/*.yaml`.

Scoring settings (how completions are read, how the label space treats
predictions, bootstrap size) sit beside the generation settings, so one
manifest records everything that shaped a row of Table 3.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from deepicd.evaluate.labels import LEADING_CODE_MODES, NIL_SCOPES
from deepicd.generate.base import SamplingConfig
from deepicd.generate.config import GeneratorConfig

SELECTIONS = ("first", "majority")
CODE_PATTERNS = ("release", "paper")
# task: reasoning in <think>, then the code (prefill "<think>"); code-only: the code alone (no prefill).
PROMPTS = ("task", "code-only")
# Named label spaces; any other value of `labels` is a CSV path.
LABEL_SPACES = ("train", "all-splits")


@dataclass
class BootstrapConfig:
    """Percentile bootstrap over notes; `samples: 0` skips the intervals."""

    samples: int = 1000  # resamples of the notes
    confidence: float = 0.95  # coverage of the interval
    seed: int = 42  # seeds the resampling


def _greedy() -> SamplingConfig:
    # One greedy answer per note unless the user asks for k samples (then set a temperature).
    return SamplingConfig(temperature=0.0, top_p=1.0, max_new_tokens=1024, n=1, seed=42)


@dataclass
class EvaluateConfig:
    """One evaluation: which split, how predictions are read and scored, how they are generated."""

    name: str = "default"  # the preset's name, recorded in the manifest
    # Split of the data folder to evaluate in --model mode ("test", "val", ...).
    split: str = "test"
    # Evaluate only the first N notes (0: all), for smoke tests.
    limit: int = 0
    # Label space: "" or "train" (labels.csv of the data folder: the train codes; without a data folder,
    # the gold codes present), "all-splits" (first codes of train, val and test of the data folder, as
    # the paper's 6,369 classes), or the path of a CSV with a `code` column. Gold codes outside it are added.
    labels: str = ""
    # Which prompt the completions answer: task (reasoning, then the code) or code-only (Table 4).
    prompt: str = "task"
    # The assistant prefill the completions were generated after; put back before parsing ("" for code-only).
    prefill: str = "<think>"
    # "release": every category of the ICD-10-CM release is valid; "paper": the published reward's pattern.
    code_pattern: str = "release"
    # "level": a prediction is NIL at a level when its projection (code, category, chapter) is outside
    # that level's label space, as the published evaluation does; "all": NIL at every level as soon as
    # the full code is outside the label space.
    nil_scope: str = "level"
    # An answer that starts with a code followed by other text ("I21.4 - NSTEMI"): "levels" earns the
    # code's category and chapter but no full code (as published), "code" reads the code at every level,
    # "off" makes it unparseable.
    leading_code: str = "levels"
    # --model mode: drop notes whose rendered prompt (chat template + prefill) is longer than this many
    # tokens before generating, and report how many; 0: keep every note.
    max_prompt_tokens: int = 0
    # With k samples per note, which one is scored: the first, or the majority vote of the full codes.
    selection: str = "first"
    # Method label for `deepicd report` (baseline, grpo, sft, sft-grpo); empty: from the model's manifest.
    stage: str = ""
    plots: bool = True  # write the PNG figures beside metrics.json
    bootstrap: BootstrapConfig = field(default_factory=BootstrapConfig)  # confidence intervals of the metrics
    sampling: SamplingConfig = field(default_factory=_greedy)  # --model mode: how answers are generated
    # --model mode only: the backend and its settings (`generator.model` is set from --model).
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)


def validate(config: EvaluateConfig) -> EvaluateConfig:
    """Check the values a schema cannot: choices and ranges, each error naming its key."""
    from deepicd.errors import ConfigError

    choices = {
        "selection": SELECTIONS,
        "nil_scope": NIL_SCOPES,
        "code_pattern": CODE_PATTERNS,
        "leading_code": LEADING_CODE_MODES,
        "prompt": PROMPTS,
    }
    for key, allowed in choices.items():
        value = getattr(config, key)
        if value not in allowed:
            raise ConfigError(f"'{key}' must be one of {list(allowed)}, not {value!r}")
    if config.limit < 0:
        raise ConfigError(f"'limit' must be >= 0, not {config.limit}")
    if config.max_prompt_tokens < 0:
        raise ConfigError(f"'max_prompt_tokens' must be >= 0 (0: no filter), not {config.max_prompt_tokens}")
    if config.prompt == "code-only" and "<think>" in config.prefill:
        raise ConfigError(
            "prompt=code-only asks for the code without reasoning, but 'prefill' opens a <think> block; "
            "set prefill='' (or use --code-only, or --config code-only)"
        )
    if config.bootstrap.samples < 0:
        raise ConfigError(f"'bootstrap.samples' must be >= 0, not {config.bootstrap.samples}")
    if not 0.0 < config.bootstrap.confidence < 1.0:
        raise ConfigError(f"'bootstrap.confidence' must lie strictly between 0 and 1, not {config.bootstrap.confidence}")
    if config.sampling.n < 1:
        raise ConfigError(f"'sampling.n' must be >= 1, not {config.sampling.n}")
    if not config.split:
        raise ConfigError("'split' must name a split of the data folder, e.g. test")
    return config


def load_evaluate_config(name_or_path: str = "default", overrides: list[str] | tuple[str, ...] = ()) -> EvaluateConfig:
    """An evaluation preset by name or YAML path, with key=value overrides, validated."""
    from deepicd.config import load

    return validate(load(EvaluateConfig, "evaluate", name_or_path, overrides))
