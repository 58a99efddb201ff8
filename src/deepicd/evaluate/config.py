"""Typed settings of `deepicd evaluate`. Presets live in `configs/evaluate/*.yaml`.

Scoring settings (how completions are read, how the label space treats
predictions, bootstrap size) sit beside the generation settings, so one
manifest records everything that shaped a row of Table 3.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from deepicd.errors import ConfigError
from deepicd.evaluate.labels import LeadingCode, NilScope
from deepicd.generate.base import SamplingConfig
from deepicd.generate.config import GeneratorConfig
from deepicd.rewards.config import CodePattern
from deepicd.schema import choice, require


class Selection(StrEnum):
    first = "first"  # the first of k samples is scored
    majority = "majority"  # the majority vote of the full codes


class Prompt(StrEnum):
    task = "task"  # reasoning in <think>, then the code (prefill "<think>")
    code_only = "code-only"  # the code alone (no prefill)


# Named label spaces; any other value of `labels` is a CSV path.
LABEL_SPACES = ("train", "all-splits")


@dataclass
class BootstrapConfig:
    """Percentile bootstrap over notes; `samples: 0` skips the intervals."""

    samples: int = 1000  # resamples of the notes
    confidence: float = 0.95  # coverage of the interval
    seed: int = 42  # seeds the resampling

    def __post_init__(self) -> None:
        require(self.samples >= 0, "evaluate config", "bootstrap.samples", "must be >= 0", self.samples)
        require(0.0 < self.confidence < 1.0, "evaluate config", "bootstrap.confidence",
                "must lie strictly between 0 and 1", self.confidence)


def _greedy() -> SamplingConfig:
    # One greedy answer per note unless the user asks for k samples (then set a temperature).
    return SamplingConfig(temperature=0.0, top_p=1.0, max_new_tokens=1024, n=1, seed=42)


@dataclass
class EvaluateConfig:
    """One evaluation: which split, how predictions are read and scored, how they are generated."""

    name: str = "default"  # the preset's name, recorded in the manifest
    out: str = ""  # folder for predictions.jsonl, metrics.json, report.md, figures, manifest.json (--out)
    # A JSONL of existing completions to score instead of a model's (--predictions); the model is generator.model.
    predictions: str = ""
    data: str = ""  # preprocess output folder: the split to generate for, labels.csv, train frequencies (--data)
    overwrite: bool = False  # replace an evaluation made with other settings or inputs (--overwrite)
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

    def __post_init__(self) -> None:
        where = "evaluate config"
        self.selection = choice(Selection, self.selection, "selection", where)
        self.nil_scope = choice(NilScope, self.nil_scope, "nil_scope", where)
        self.code_pattern = choice(CodePattern, self.code_pattern, "code_pattern", where)
        self.leading_code = choice(LeadingCode, self.leading_code, "leading_code", where)
        self.prompt = choice(Prompt, self.prompt, "prompt", where)
        require(self.limit >= 0, where, "limit", "must be >= 0", self.limit)
        require(self.max_prompt_tokens >= 0, where, "max_prompt_tokens", "must be >= 0 (0: no filter)",
                self.max_prompt_tokens)
        if self.prompt == Prompt.code_only and "<think>" in self.prefill:
            raise ConfigError(
                "prompt=code-only asks for the code without reasoning, but 'prefill' opens a <think> block; "
                "set prefill='' (or use --code-only, or --config code-only)"
            )
        require(bool(self.split), where, "split", "must name a split of the data folder, e.g. test", self.split)


def load_evaluate_config(name_or_path: str = "default", overrides: list[str] | tuple[str, ...] = ()) -> EvaluateConfig:
    """An evaluation preset by name or YAML path, with key=value overrides, checked when built."""
    from deepicd.config import load

    return load(EvaluateConfig, "evaluate", name_or_path, overrides)
