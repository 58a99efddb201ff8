"""The demo's promise, checked on what its stages wrote: each training stage measurably helped.

The paper's story has three claims a tiny model on a CPU can still show:
R1-zero GRPO learns from the reward alone (its chapter F1 at least doubles the
base model's and beats always answering the most frequent chapter, and its
reward rises during training); GRPO after SFT beats SFT (a paired bootstrap
interval of the difference lies above zero, in mean reward or in category
macro F1); and the final model answers in the required format. Each claim is
a `Check` with the numbers behind it, so a failed demo says which claim broke.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from deepicd import manifest
from deepicd.evaluate import paired
from deepicd.train import reward_curves


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str


def _metrics(folder: Path) -> dict:
    return json.loads((folder / "metrics.json").read_text())


def grpo_learns_the_chapter(base: dict, grpo: dict) -> Check:
    """(2) R1-zero GRPO: chapter macro F1 at least twice the base model's and above the majority baseline."""
    f1, before = grpo["chapter"]["macro_f1"], base["chapter"]["macro_f1"]
    majority = grpo["baselines"]["majority_chapter_macro_f1"]
    passed = f1 >= 2 * before and f1 > majority
    return Check("grpo chapter F1", passed, f"R1-zero GRPO chapter macro F1 {f1:.3f}, base model {before:.3f} "
                 f"(needs >= {2 * before:.3f}), majority baseline {majority:.3f} (needs >)")


def reward_rises(log: list[dict], stage: str = "R1-zero GRPO") -> Check:
    """(2) The mean reward of the last quarter of the steps is above that of the first quarter."""
    if not log:
        return Check(f"{stage} reward rises", False, f"{stage} logged no reward")
    first, last = reward_curves.quarter_means(log)
    return Check(f"{stage} reward rises", last > first, f"{stage} mean reward over {len(log)} steps: first quarter "
                 f"{first:.2f}, last quarter {last:.2f} (needs last > first)")


def sft_grpo_beats_sft(sft: Path, sft_grpo: Path, samples: int, seed: int) -> Check:
    """(4) SFT+GRPO over SFT: a paired bootstrap interval of mean reward or category macro F1 above zero."""
    differences = paired.compare(sft, sft_grpo, samples=samples, seed=seed)
    parts = [f"{d.statistic} {d.before:.3f} -> {d.after:.3f}, difference {d.difference:+.3f} "
             f"[{d.low:+.3f}, {d.high:+.3f}]" for d in differences.values()]
    passed = any(d.above_zero for d in differences.values())
    confidence = next(iter(differences.values())).confidence
    return Check("sft+grpo beats sft", passed, "SFT+GRPO against SFT on the test notes: " + "; ".join(parts)
                 + f" ({confidence:.0%} paired bootstrap; needs one interval above zero)")


def format_rate(final: dict, minimum: float) -> Check:
    """The final model's well-formed answers reach the configured share."""
    rate = final["format_rate"]
    return Check("final format rate", rate >= minimum, f"SFT+GRPO format rate {rate:.2f} (needs >= {minimum:.2f})")


def run_checks(root: Path, min_format_rate: float, samples: int = 1000, seed: int = 0) -> list[Check]:
    """Every check on a demo folder (eval/<stage>/, grpo/reward_log.jsonl)."""
    evals = root / "eval"
    final = _metrics(evals / "sft-grpo")
    return [
        grpo_learns_the_chapter(_metrics(evals / "baseline"), _metrics(evals / "grpo")),
        reward_rises(reward_curves.read(root / "grpo")),
        sft_grpo_beats_sft(evals / "sft", evals / "sft-grpo", samples, seed),
        format_rate(final, min_format_rate),
    ]


def write(checks: list[Check], path: Path) -> Path:
    """The checks as JSON at `path`, written whole (`manifest.write_json`)."""
    manifest.write_json(path, [asdict(check) for check in checks])
    return path
