"""Paired bootstrap of a later model against an earlier one on the same notes."""

from __future__ import annotations

import json

import numpy as np

from deepicd.evaluate import paired


def write_eval(folder, golds, answers):
    """A predictions.jsonl as `deepicd evaluate` writes it: id, gold, completion and the category level."""
    folder.mkdir(parents=True)
    lines = []
    for i, (gold, answer) in enumerate(zip(golds, answers)):
        completion = f" reasoning </think>\n<diagnosis>{answer}</diagnosis>" if answer else "nothing"
        lines.append(json.dumps({"id": f"n{i}", "gold": gold, "completion": completion, "levels": {
            "category": {"gold": gold[:3], "prediction": answer[:3] if answer else None}}}))
    (folder / "predictions.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def test_a_clearly_better_model_has_an_interval_above_zero(tmp_path):
    rng = np.random.default_rng(1)
    golds = [rng.choice(["I214", "I509", "J189", "J441", "K359"]) for _ in range(120)]
    worse = write_eval(tmp_path / "a", golds, [None if i % 2 else "A419" for i in range(120)])
    better = write_eval(tmp_path / "b", golds, [g if i % 3 else "A419" for i, g in enumerate(golds)])
    result = paired.compare(worse, better, samples=200)
    reward, f1 = result["mean_reward"], result["category_macro_f1"]
    assert reward.above_zero and f1.above_zero and reward.low <= reward.difference <= reward.high
    assert reward.before < 0 < reward.after and f1.before == 0.0 and f1.after > 0.5
    backwards = paired.compare(better, worse, samples=200)
    assert not backwards["mean_reward"].above_zero and backwards["mean_reward"].high < 0


def test_equal_models_do_not_pass_and_only_common_notes_count(tmp_path):
    golds = ["I214", "J189"] * 30
    answers = ["I214", "J180"] * 30
    first = write_eval(tmp_path / "a", golds, answers)
    second = write_eval(tmp_path / "b", golds[:40], answers[:40])
    result = paired.compare(first, second, samples=100)
    assert result["mean_reward"].n == 40 and result["mean_reward"].difference == 0.0
    assert not result["mean_reward"].above_zero and not result["category_macro_f1"].above_zero
    assert result["mean_reward"].as_dict()["above_zero"] is False
