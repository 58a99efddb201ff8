"""The GRPO reward log: steps and components out of TRL's history, quarter means, the figure."""

from __future__ import annotations

import pytest

from deepicd.train import reward_curves


def history(rewards):
    entries = [{"loss": 0.1, "step": 1}]  # a loss-only entry: not a reward step
    for step, value in enumerate(rewards, start=1):
        entries.append({"step": step, "reward": value, "rewards/outcome/mean": value - 1,
                        "rewards/format/mean": 1.0, "rewards/judge/mean": 0.8, "reward_std": 2.0})
    entries.append({"train_runtime": 3.0, "step": len(rewards)})
    return entries


def test_steps_keep_the_total_and_every_component_by_its_short_name():
    rows = reward_curves.steps(history([1.0, 2.0]))
    assert rows == [
        {"step": 1, "reward": 1.0, "outcome": 0.0, "format": 1.0, "judge": 0.8},
        {"step": 2, "reward": 2.0, "outcome": 1.0, "format": 1.0, "judge": 0.8},
    ]
    assert reward_curves.components(rows) == ["reward", "outcome", "format", "judge"]


def test_quarter_means_compare_the_start_with_the_end():
    rows = reward_curves.steps(history([0, 0, 1, 1, 2, 2, 3, 5]))
    assert reward_curves.quarter_means(rows) == (0.0, 4.0)
    assert reward_curves.quarter_means(rows[:2]) == (0.0, 0.0)  # a quarter is at least one step
    with pytest.raises(ValueError):
        reward_curves.quarter_means([])


def test_write_and_read_back(tmp_path):
    log, figure = reward_curves.write(history([1.0, -1.0, 3.0]), tmp_path)
    assert [row["reward"] for row in reward_curves.read(tmp_path)] == [1.0, -1.0, 3.0]
    assert log == tmp_path / "reward_log.jsonl" and figure.read_bytes()[:4] == b"\x89PNG"
    log, figure = reward_curves.write([], tmp_path / "empty")
    assert figure is None and reward_curves.read(log) == []
