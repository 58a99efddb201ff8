"""A short run of the demo's whole chain: every stage's command, wired through files, in one go."""

from __future__ import annotations

import json

import pytest

from deepicd import demo
from deepicd.manifest import KEYS

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def test_demo_chain_runs_every_stage_and_resumes(tmp_path, capsys):
    out = tmp_path / "demo"
    overrides = [
        f"out={out}", "admissions=160", "codes=4", "codes_per_category=1", "categories_per_chapter=1",
        "preprocess=[split.min_count=2]",
        "instruct=[max_steps=4,cpu_threads=1]",
        "grpo=[grpo.max_steps=1,max_train_samples=8,grpo.max_completion_length=8]",
        "sft_grpo=[grpo.max_steps=1,max_train_samples=8,grpo.max_completion_length=8]",
        "distill=[sampling.max_new_tokens=4,limit=24,filters.repair_answer=true,filters.min_words=1]",
        "sft=[max_steps=4,cpu_threads=1]", "sft_outcome=[max_steps=4]",
        "evaluate=[limit=8,sampling.max_new_tokens=12,bootstrap.samples=0,plots=false]",
        "check_learning=false",
    ]
    assert demo.main(overrides) == 0
    for stage in ("baseline", "grpo", "sft", "sft-grpo"):
        metrics = json.loads((out / "eval" / stage / "metrics.json").read_text())
        assert metrics["n"] == 8
        assert 0.0 <= metrics["chapter"]["macro_f1"] <= 1.0
    table = (out / "report" / "table3.md").read_text()
    for group in ("Baselines", "GRPO", "SFT", "SFT+GRPO"):
        assert f"**{group}**" in table
    assert "| majority (train) |" in table and "| Format |" in table
    # Both GRPO runs leave their reward history and curves beside the model; the final checks are written.
    for run in ("grpo", "sft-grpo"):
        assert (out / run / "reward_curves.png").read_bytes()[:4] == b"\x89PNG"
        assert "judge" in (out / run / "reward_log.jsonl").read_text()
    checks = json.loads((out / "report" / "checks.json").read_text())
    assert [c["name"] for c in checks] == ["grpo chapter F1", "R1-zero GRPO reward rises", "sft+grpo beats sft",
                                           "final format rate"]
    # Table 4 (outcome-only SFT, evaluated code-only) and Figure 4 (per-chapter F1 against SFT samples).
    table4 = (out / "report" / "table4.md").read_text()
    assert "**Reasoning + outcome**" in table4 and "**Outcome only**" in table4 and "| sft-outcome |" in table4
    assert json.loads((out / "eval" / "sft-outcome" / "metrics.json").read_text())["prompt"] == "code-only"
    assert (out / "report" / "sft_samples_vs_f1.png").read_bytes()[:4] == b"\x89PNG"
    stats = json.loads((out / "distill" / "stats.json").read_text())
    assert 20 <= stats["kept"] <= 24 and stats["answers_repaired"] == stats["kept"]
    # Every stage's manifest has the same keys; each names its stage, and the models their method.
    manifests = {path.parent.relative_to(out).as_posix(): json.loads(path.read_text())
                 for path in out.rglob("manifest.json") if "checkpoint" not in path.as_posix()}
    assert all(tuple(entry) == KEYS for entry in manifests.values()), {k: list(v) for k, v in manifests.items()}
    assert {entry["stage"] for entry in manifests.values()} == {
        "synth-mimic", "preprocess", "tiny-model", "format-data", "sft", "train-grpo", "distill", "sft-data", "evaluate",
        "report"}
    assert (manifests["grpo"]["method"], manifests["sft-grpo"]["method"], manifests["sft"]["method"]) == (
        "grpo", "sft-grpo", "sft")
    assert manifests["eval/sft-grpo"]["method"] == "sft-grpo" and manifests["eval/baseline"]["method"] == "baseline"

    # A second run finds every step done and only rebuilds the report.
    capsys.readouterr()
    assert demo.main(overrides) == 0
    assert capsys.readouterr().out.count("done earlier, skipped") == 16
