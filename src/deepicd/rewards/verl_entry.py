"""The reward function VERL loads by file path: `compute_score` for `reward.custom_reward_function`.

VERL 0.9 imports this file with `importlib` (not as `deepicd.rewards.verl_entry`)
inside every reward-loop worker, then calls `compute_score` once per response
with `data_source, solution_str, ground_truth, extra_info`, merged with the
`reward.custom_reward_function.reward_kwargs` of the run. We use those kwargs to
name the reward preset (`preset=paper-judge`, `overrides=[...]`), so the
training command fully determines the reward and nothing is read from the
environment. The scorer is built lazily, once per worker process and preset.

The function is `async`: VERL's reward managers await coroutine functions on
their event loop, so judge requests of concurrent responses overlap instead of
blocking a thread each. It returns the same numeric keys for every response of
a run (VERL stacks them into per-key arrays): `score`, `acc` (exact match, the
headline validation metric), `valid`, one key per reward component, and, with
the judge on, `judge_rating`, `judge_asked` and `judge_fallback`.
`data_source` is ignored: every row of our data is the same task.
"""

from __future__ import annotations

import threading
from typing import Any, Sequence

JUDGE = "judge"
_SCORERS: dict[tuple[str, tuple[str, ...]], Any] = {}
_LOCK = threading.Lock()


def _as_overrides(overrides: Any) -> tuple[str, ...]:
    if overrides is None:
        return ()
    if isinstance(overrides, str):
        return (overrides,) if overrides else ()
    return tuple(str(item) for item in overrides)


def get_scorer(preset: str = "paper", overrides: Sequence[str] | str | None = ()):
    """The scorer for a reward preset (name or YAML path) and overrides, built once per process."""
    key = (str(preset), _as_overrides(overrides))
    scorer = _SCORERS.get(key)
    if scorer is None:
        with _LOCK:
            scorer = _SCORERS.get(key)
            if scorer is None:
                from deepicd.rewards.config import load_reward_config
                from deepicd.rewards.scorer import RewardScorer

                scorer = RewardScorer(load_reward_config(key[0], list(key[1])))
                _SCORERS[key] = scorer
    return scorer


def result_keys(components: Sequence[str]) -> list[str]:
    """The keys `compute_score` returns for a preset with these components, in order."""
    keys = ["score", "acc", "valid", *components]
    if JUDGE in components:
        keys += ["judge_rating", "judge_asked", "judge_fallback"]
    return keys


def to_metrics(result, components: Sequence[str]) -> dict[str, float]:
    """A `RewardResult` as VERL's per-response dict: every key present, every value a float."""
    metrics = {
        "score": float(result.total),
        "acc": 1.0 if result.exact else 0.0,
        "valid": 1.0 if result.valid else 0.0,
    }
    for name in components:
        metrics[name] = float(result.terms.get(name, 0.0))
    if JUDGE in components:
        metrics["judge_rating"] = float(result.judge_score or 0)
        metrics["judge_asked"] = 0.0 if result.judge_status in (None, "skipped") else 1.0
        metrics["judge_fallback"] = 1.0 if result.judge_status == "fallback" else 0.0
    return metrics


def _note(extra_info: Any) -> str | None:
    if isinstance(extra_info, dict):
        note = extra_info.get("note")
        return str(note) if note is not None else None
    return None


async def compute_score(
    data_source: Any,
    solution_str: str,
    ground_truth: Any,
    extra_info: dict | None = None,
    preset: str = "paper",
    overrides: Sequence[str] | str | None = (),
    **kwargs: Any,
) -> dict[str, float]:
    """Score one response (the text generated after the `<think>` prefill) against its gold code."""
    scorer = get_scorer(preset, overrides)
    note = _note(extra_info)
    if scorer.uses_judge and note is None:
        raise ValueError(
            f"reward preset {preset!r} uses the judge, which needs the admission note: the row's extra_info "
            "has no 'note' (re-run `deepicd preprocess` to write it)"
        )
    [result] = await scorer.ascore_batch([(solution_str, ground_truth, note)])
    return to_metrics(result, scorer.config.components)
