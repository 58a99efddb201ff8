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
the judge on, `judge_rating`, `judge_asked` and `judge_fallback`; and `reward_error` (1 when the
response could not be scored normally, see `compute_score`).
`data_source` is ignored: every row of our data is the same task.
"""

from __future__ import annotations

import asyncio
import logging
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
    return keys + ["reward_error"]


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


# compute_score gives up on the judge this long after its batch deadline, so that VERL's own per-response
# timeout (which would score the response 0.0 with other keys) never fires first; see `check_timeout`.
DEADLINE_GRACE_S = 15.0


def check_timeout(verl_timeout_s: float, judge_deadline_s: float) -> str:
    """'' when VERL's reward timeout leaves the judge its whole deadline; otherwise what to change."""
    needed = judge_deadline_s + DEADLINE_GRACE_S
    if verl_timeout_s > needed:
        return ""
    return (f"VERL's reward timeout ({verl_timeout_s:g} s, verl.reward_timeout_s) must exceed the judge's batch "
            f"deadline plus {DEADLINE_GRACE_S:g} s ({needed:g} s): a timed-out response scores 0.0 in VERL, more "
            "than a wrong answer, which would reward stalling the judge. Raise verl.reward_timeout_s or lower "
            "judge.batch_deadline_s in the reward preset")


def _rules_only(scorer, solution_str: Any, ground_truth: Any) -> dict[str, float]:
    """The response scored by the rule terms, the judge term at its fallback value."""
    components = scorer.config.components
    try:
        result = scorer.score_rules(str(solution_str if solution_str is not None else ""), ground_truth)
    except Exception:  # a gold label the scorer cannot read: no outcome credit, the no-answer value
        metrics = {key: 0.0 for key in result_keys(components)}
        metrics["score"] = -1.0
        metrics["reward_error"] = 1.0
        return metrics
    if JUDGE in components:
        fallback = scorer.config.judge.fallback_value * scorer.config.judge.weight
        result.terms[JUDGE] = fallback
        result.total += fallback
        result.judge_status = "fallback"
    metrics = to_metrics(result, components)
    metrics["reward_error"] = 1.0
    return metrics


async def compute_score(
    data_source: Any,
    solution_str: str,
    ground_truth: Any,
    extra_info: dict | None = None,
    preset: str = "paper",
    overrides: Sequence[str] | str | None = (),
    **kwargs: Any,
) -> dict[str, float]:
    """Score one response (the text generated after the `<think>` prefill) against its gold code.

    Never raises for a response: a missing note, a judge that fails or outlives its deadline, or any other
    error scores the rule terms with the judge at its fallback value and `reward_error` = 1, so that a
    failure can never earn more than an answer would. Only a preset that cannot be loaded raises (it would
    fail every response alike; preflight loads it first).
    """
    scorer = get_scorer(preset, overrides)
    note = _note(extra_info)
    if scorer.uses_judge and note is None:
        _warn_once("the row's extra_info has no 'note' (re-run `deepicd preprocess`): judge term at its fallback value")
        return _rules_only(scorer, solution_str, ground_truth)
    deadline = scorer.config.judge.batch_deadline_s + DEADLINE_GRACE_S if scorer.uses_judge else None
    try:
        [result] = await asyncio.wait_for(scorer.ascore_batch([(solution_str, ground_truth, note)]), deadline)
    except Exception as exc:  # includes asyncio.TimeoutError; the response must still get a bounded score
        _warn_once(f"scoring failed ({type(exc).__name__}: {exc}); judge term at its fallback value")
        return _rules_only(scorer, solution_str, ground_truth)
    metrics = to_metrics(result, scorer.config.components)
    metrics["reward_error"] = 0.0
    return metrics


_WARNED: set[str] = set()


def _warn_once(message: str) -> None:
    """Log a scoring problem once per process: a failing judge would otherwise print on every response."""
    if message not in _WARNED:
        _WARNED.add(message)
        logging.getLogger("deepicd.rewards").warning(message)
