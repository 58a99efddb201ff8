"""The demo's final checks: each claim passes on numbers that show it and fails, by name, on numbers that do not."""

from __future__ import annotations

import json

import pytest

from deepicd import demo, demo_check


def write_stage(root, stage, chapter_f1, format_rate, answers, golds):
    folder = root / "eval" / stage
    folder.mkdir(parents=True)
    metrics = {"chapter": {"macro_f1": chapter_f1}, "format_rate": format_rate,
               "baselines": {"majority_chapter_macro_f1": 0.1}}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    rows = [{"id": f"n{i}", "gold": gold, "levels": {"category": {"gold": gold[:3], "prediction": answer and answer[:3]}},
             "completion": f" why </think>\n<diagnosis>{answer}</diagnosis>" if answer else ""}
            for i, (gold, answer) in enumerate(zip(golds, answers))]
    (folder / "predictions.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))


def make_demo(root, *, grpo_f1=0.4, rewards=(0, 0, 1, 2, 3, 3, 4, 5), sft_grpo_better=True, final_format=0.95):
    golds = ["I214", "J189", "K359", "N390"] * 20
    wrong = ["A419"] * len(golds)
    write_stage(root, "baseline", 0.05, 0.3, wrong, golds)
    write_stage(root, "grpo", grpo_f1, 0.8, wrong, golds)
    write_stage(root, "sft", 0.3, 0.9, [g if i % 4 == 0 else "A419" for i, g in enumerate(golds)], golds)
    better = [g if i % 4 != 3 else "A419" for i, g in enumerate(golds)]
    write_stage(root, "sft-grpo", 0.5, final_format, better if sft_grpo_better else
                [g if i % 4 == 0 else "A419" for i, g in enumerate(golds)], golds)
    (root / "grpo").mkdir(parents=True)
    (root / "grpo" / "reward_log.jsonl").write_text(
        "".join(json.dumps({"step": i + 1, "reward": r}) + "\n" for i, r in enumerate(rewards)))
    return root


def failed(root, minimum=0.9):
    return [c.name for c in demo_check.run_checks(root, minimum, samples=200) if not c.passed]


def test_a_demo_that_learned_passes_every_check(tmp_path):
    checks = demo_check.run_checks(make_demo(tmp_path), 0.9, samples=200)
    assert [c.passed for c in checks] == [True] * 4
    assert "first quarter 0.00, last quarter 4.50" in checks[1].detail


@pytest.mark.parametrize(("change", "name"), [
    ({"grpo_f1": 0.09}, "grpo chapter F1"),             # below twice the base (0.10)
    ({"grpo_f1": 0.1}, "grpo chapter F1"),              # twice the base but not above the majority
    ({"rewards": (3, 3, 2, 1, 1, 0, 0, 0)}, "R1-zero GRPO reward rises"),
    ({"rewards": ()}, "R1-zero GRPO reward rises"),
    ({"sft_grpo_better": False}, "sft+grpo beats sft"),
    ({"final_format": 0.5}, "final format rate"),
])
def test_each_broken_claim_fails_by_name(tmp_path, change, name):
    assert failed(make_demo(tmp_path, **change)) == [name]


def test_the_demo_fails_and_names_the_claims_unless_told_not_to(tmp_path, capsys):
    root = make_demo(tmp_path, final_format=0.5, rewards=(1, 1, 1, 1))
    config = demo.DemoConfig(out=str(root), paired_samples=100)
    with pytest.raises(demo.DemoFailed, match="R1-zero GRPO reward rises, final format rate"):
        demo.Demo(config).check()
    assert "FAIL  final format rate: SFT+GRPO format rate 0.50 (needs >= 0.90)" in capsys.readouterr().out
    written = json.loads((root / "report" / "checks.json").read_text())
    assert [c["passed"] for c in written] == [True, False, True, False]
    config.check_learning = False
    assert len(demo.Demo(config).check()) == 4
