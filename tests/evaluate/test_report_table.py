"""`deepicd report`: Table 3 across evaluation folders, grouped by the method their manifests record."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from evalkit import TEST, answer, write_jsonl
from typer.testing import CliRunner

from deepicd.cli import app
from deepicd.evaluate import table

runner = CliRunner()


def fake_run(root: Path, name: str, f1: float, manifest: dict | None, *, nested: bool = False) -> Path:
    """An evaluation folder with metrics at three levels (R = f1 + 0.1, P = f1 - 0.05)."""
    folder = root / name / "eval" if nested else root / name
    folder.mkdir(parents=True)
    scores = {"macro_recall": f1 + 0.1, "macro_precision": f1 - 0.05, "macro_f1": f1, "micro_f1": f1}
    metrics = {"n": 10, "chapter": scores, "category": {k: v / 2 for k, v in scores.items()},
               "full_code": {k: v / 4 for k, v in scores.items()}}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    if manifest is not None:
        (folder / "manifest.json").write_text(json.dumps(manifest))
    return root / name if nested else folder


@pytest.mark.parametrize(
    ("label", "group"),
    [("grpo", "GRPO"), ("SFT", "SFT"), ("sft_grpo", "SFT+GRPO"), ("sft+grpo", "SFT+GRPO"), ("SFT GRPO", "SFT+GRPO"),
     ("baseline", "Baselines"), ("tiny-model", "Other"), ("", "Other"), (None, "Other")],
)
def test_group_of(label, group):
    assert table.group_of(label) == group


def test_runs_are_grouped_in_table_3_order(tmp_path):
    runs = [
        fake_run(tmp_path, "sft-llama", 0.529, {"method": "sft"}),
        fake_run(tmp_path, "mystery", 0.3, None),
        fake_run(tmp_path, "qwen7b", 0.394, {"method": "baseline", "stage": "evaluate"}),
        fake_run(tmp_path, "sftgrpo-llama", 0.595, {"method": "sft-grpo"}, nested=True),
        fake_run(tmp_path, "grpo-32b", 0.498, {"method": "grpo"}),
    ]
    loaded = table.load_runs(runs)
    rows = table.rows(loaded)
    assert [(r["group"], r["run"]) for r in rows] == [
        ("Baselines", "qwen7b"), ("GRPO", "grpo-32b"), ("SFT", "sft-llama"), ("SFT+GRPO", "sftgrpo-llama"), ("Other", "mystery"),
    ]
    first = rows[0]
    assert (first["chapter_R"], first["chapter_P"], first["chapter_F1"]) == (49.4, 34.4, 39.4)
    assert first["full_code_F1"] == round(0.394 / 4 * 100, 1)

    markdown = table.to_markdown(rows)
    assert markdown.splitlines()[0].startswith("| Model | Chapter R | Chapter P | Chapter F1 | Category R")
    assert "| **Baselines** |" in markdown and "| **SFT+GRPO** |" in markdown
    assert "| qwen7b | 49.4 | 34.4 | 39.4 |" in markdown

    parsed = list(csv.DictReader(io.StringIO(table.to_csv(rows))))
    assert parsed[3]["run"] == "sftgrpo-llama" and parsed[3]["chapter_F1"] == "59.5"


def test_report_cli_on_a_real_evaluation(tmp_path, data_dir):
    rows = [{"gold": gold, "completion": answer(gold if i % 2 == 0 else "I500")} for i, gold in enumerate(TEST)]
    predictions = write_jsonl(tmp_path / "outputs.jsonl", rows)
    evaluation = tmp_path / "runs" / "grpo-tiny" / "eval"
    result = runner.invoke(app, ["evaluate", "--predictions", str(predictions), "--data", str(data_dir), "--out", str(evaluation),
                                 "--stage", "grpo", "bootstrap.samples=0", "plots=false"])
    assert result.exit_code == 0, result.output
    other = fake_run(tmp_path / "runs", "qwen-base", 0.2, {"method": "baseline"})

    out = tmp_path / "table"
    result = runner.invoke(app, ["report", str(evaluation), str(other), "--out", str(out)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((evaluation / "metrics.json").read_text())
    expected = f"{metrics['chapter']['macro_f1'] * 100:.1f}"
    assert "| grpo-tiny |" in result.output and expected in result.output
    assert (out / "table3.md").read_text() in result.output
    assert (out / "table3.csv").read_text().splitlines()[1].startswith("Baselines,qwen-base,")
    # The same evaluations again: nothing is written, the table is printed; another evaluation needs --overwrite.
    recorded = (out / "manifest.json").read_bytes()
    again = runner.invoke(app, ["report", str(evaluation), str(other), "--out", str(out)])
    assert again.exit_code == 0 and "already holds this run" in again.output and "| grpo-tiny |" in again.output
    assert (out / "manifest.json").read_bytes() == recorded
    fewer = runner.invoke(app, ["report", str(evaluation), "--out", str(out)])
    assert fewer.exit_code == 2 and "--overwrite" in fewer.output
    inside = runner.invoke(app, ["report", str(evaluation), "--out", str(evaluation), "--overwrite"])
    assert inside.exit_code == 2 and "is the input run-0-manifest" in inside.output


def test_report_errors(tmp_path):
    cases = [
        ([str(tmp_path / "nowhere")], "run folder not found"),
        ([str(tmp_path)], "no metrics.json"),
    ]
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "metrics.json").write_text(json.dumps({"chapter": {"macro_f1": 0.1}}))
    cases.append(([str(broken)], "lacks 'chapter.macro_recall'"))
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "metrics.json").write_text("{oops")
    cases.append(([str(bad)], "is not valid JSON"))
    for args, message in cases:
        result = runner.invoke(app, ["report", *args, "--out", str(tmp_path / "t")])
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output.replace("\n", " "), (args, result.output)


def test_same_folder_names_are_told_apart(tmp_path):
    a = fake_run(tmp_path / "a", "qwen", 0.1, None)
    b = fake_run(tmp_path / "b", "qwen", 0.2, None)
    names = [run.name for run in table.load_runs([a, b])]
    assert names == [str(a), str(b)]


def test_method_of_a_model_comes_from_its_training_manifest(tmp_path):
    from deepicd.evaluate.manifest import model_stage

    sft = tmp_path / "sft" / "model"
    sft.mkdir(parents=True)
    (tmp_path / "sft" / "manifest.json").write_text(json.dumps({"method": "sft"}))
    assert model_stage(sft) == "sft"
    grpo = tmp_path / "grpo"
    grpo.mkdir()
    (grpo / "manifest.json").write_text(json.dumps({"method": "sft-grpo"}))
    assert table.group_of(model_stage(grpo)) == "SFT+GRPO"
    stray = tmp_path / "other" / "model"
    stray.mkdir(parents=True)
    (tmp_path / "other" / "manifest.json").write_text(json.dumps({"stage": "preprocess"}))
    assert model_stage(stray) == ""
    assert model_stage("org/hub-model") == ""


def _with_chapters(folder: Path, f1: dict[str, float]) -> Path:
    """Add per-chapter F1 (support 1 each) to a fake run's metrics.json."""
    path = folder / "metrics.json"
    metrics = json.loads(path.read_text())
    metrics["per_chapter"] = [{"chapter": c, "f1": v, "support": 1, "predicted": 1, "precision": v, "recall": v}
                              for c, v in f1.items()]
    path.write_text(json.dumps(metrics))
    return folder


def test_table4_sets_outcome_only_against_reasoning_fine_tunes(tmp_path):
    runs = [
        fake_run(tmp_path, "grpo-32b", 0.498, {"method": "grpo", "prompts": {"target": "reasoning+outcome"}}),
        fake_run(tmp_path, "sft-grpo-qwen", 0.545, {"method": "sft-grpo", "prompts": {"target": "reasoning+outcome"}}),
        fake_run(tmp_path, "sft-outcome", 0.40, {"method": "sft", "prompts": {"target": "outcome-only"}}),
        fake_run(tmp_path, "sft-qwen", 0.50, {"method": "sft", "prompts": {"target": "reasoning+outcome"}}),
    ]
    out = tmp_path / "tables"
    result = runner.invoke(app, ["report", *map(str, runs), "--out", str(out)])
    assert result.exit_code == 0, result.output
    markdown = (out / "table4.md").read_text()
    lines = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert [line.split(" |")[0] for line in lines[1:]] == [
        "| **Reasoning + outcome**", "| sft-qwen", "| sft-grpo-qwen", "| **Outcome only**", "| sft-outcome",
    ]
    assert "Table 4" in markdown and "grpo-32b" not in markdown
    assert markdown in result.output
    parsed = list(csv.DictReader(io.StringIO((out / "table4.csv").read_text())))
    assert [(row["group"], row["run"]) for row in parsed][-1] == ("Outcome only", "sft-outcome")

    # Without an outcome-only run there is nothing to compare: no Table 4.
    alone = tmp_path / "alone"
    assert runner.invoke(app, ["report", str(runs[3]), "--out", str(alone)]).exit_code == 0
    assert not (alone / "table4.md").exists()


def test_table4_reads_the_prompt_of_older_evaluations():
    from deepicd.evaluate import table4

    run = table.Run("x", "SFT", "sft", Path("."), {}, {"config": {"prompt": "code-only"}})
    assert table4.target_of(run) == "outcome-only"
    run.manifest = {"config": {"prompt": "task"}}
    assert table4.target_of(run) == "reasoning+outcome"


def test_figure4_plots_chapter_f1_against_sft_samples(tmp_path):
    stats = {"per_chapter": [
        {"chapter": "09 IX (I00-I99)", "generated": 40, "kept": 30, "kept_rate": 0.75},
        {"chapter": "10 X (J00-J99)", "generated": 30, "kept": 25, "kept_rate": 0.83},
        {"chapter": "11 XI (K00-K95)", "generated": 20, "kept": 20, "kept_rate": 1.0},
        {"chapter": "14 XIV (N00-N99)", "generated": 15, "kept": 15, "kept_rate": 1.0},
        {"chapter": "04 IV (E00-E89)", "generated": 10, "kept": 10, "kept_rate": 1.0},
        {"chapter": "?? (no chapter)", "generated": 1, "kept": 0, "kept_rate": 0.0},
    ]}
    (tmp_path / "distill").mkdir()
    (tmp_path / "distill" / "stats.json").write_text(json.dumps(stats))
    a = _with_chapters(fake_run(tmp_path, "sft", 0.5, {"method": "sft"}), {"IX": 0.9, "X": 0.7, "XI": 0.5, "XIV": 0.2, "IV": 0.0})
    b = _with_chapters(fake_run(tmp_path, "sft-grpo", 0.6, {"method": "sft-grpo"}), {"IX": 1.0, "X": 0.8, "XIV": 0.4})
    out = tmp_path / "report"
    result = runner.invoke(app, ["report", str(a), str(b), "--out", str(out), "--sft-stats", str(tmp_path / "distill")])
    assert result.exit_code == 0, result.output
    assert (out / "sft_samples_vs_f1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader(io.StringIO((out / "sft_samples_vs_f1.csv").read_text())))
    assert len(rows) == 8
    first = rows[0]
    assert (first["run"], first["chapter"], first["sft_samples"], first["tercile"], first["f1"]) == ("sft", "IX", "30", "head", "90.0")
    # 100 samples: IX (30) and X (25) start below a third -> head; XI starts at 55% -> medium; XIV (75%), IV tail.
    output = result.output.replace("\n", " ")
    assert "head: IX, X (55.0% of SFT samples)" in output and "medium: XI (20.0%" in output
    assert "tail: XIV, IV (25.0% of SFT samples); mean chapter F1 %: sft 10.0; sft-grpo 40.0" in output

    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"table2": {}}))
    other = runner.invoke(app, ["report", str(a), "--out", str(out), "--sft-stats", str(broken)])
    assert other.exit_code == 2 and "input sft_stats, input run-1, input run-1-manifest" in other.output.replace("\n", "")
    refused = runner.invoke(app, ["report", str(a), "--out", str(out), "--sft-stats", str(broken), "--overwrite"])
    assert refused.exit_code == 2 and "no 'per_chapter' list" in refused.output
    missing = runner.invoke(app, ["report", str(a), "--out", str(out), "--sft-stats", str(tmp_path / "nope.json"),
                                  "--overwrite"])
    assert missing.exit_code == 2 and "SFT stats file not found" in missing.output


def test_table3_shows_the_majority_row_the_format_rate_and_f1_intervals(tmp_path, data_dir):
    rows = [{"gold": gold, "completion": answer(gold) if i % 3 else "no answer"} for i, gold in enumerate(TEST)]
    predictions = write_jsonl(tmp_path / "outputs.jsonl", rows)
    evaluation = tmp_path / "runs" / "sft-tiny"
    result = runner.invoke(app, ["evaluate", "--predictions", str(predictions), "--data", str(data_dir), "--out",
                                 str(evaluation), "--stage", "sft", "bootstrap.samples=50", "plots=false"])
    assert result.exit_code == 0, result.output
    baseline = fake_run(tmp_path / "runs", "qwen-base", 0.2, {"method": "baseline"})
    out = tmp_path / "table"
    assert runner.invoke(app, ["report", str(baseline), str(evaluation), "--out", str(out)]).exit_code == 0
    metrics = json.loads((evaluation / "metrics.json").read_text())
    lines = (out / "table3.md").read_text().splitlines()
    assert lines[0].endswith("| Full code F1 | Format |")
    names = [line.split(" | ")[0] for line in lines[2:6]]
    assert names == ["| **Baselines**", "| qwen-base", "| majority (train)", "| **SFT**"]
    majority = metrics["baselines"]["majority_scores"]["chapter"]
    assert f"| majority (train) | {majority['macro_recall'] * 100:.1f} |" in lines[4] and lines[4].endswith("| – |")
    sft = next(line for line in lines if line.startswith("| sft-tiny |"))
    low, high = metrics["intervals"]["chapter"]["macro_f1"]
    assert f"{metrics['chapter']['macro_f1'] * 100:.1f} [{low * 100:.1f}, {high * 100:.1f}]" in sft
    assert sft.endswith(f"| {metrics['format_rate'] * 100:.1f} |") and 0 < metrics["format_rate"] < 1
    parsed = list(csv.DictReader(io.StringIO((out / "table3.csv").read_text())))
    assert parsed[1]["run"] == "majority (train)" and parsed[2]["format"] == f"{metrics['format_rate'] * 100:.1f}"
    assert parsed[0]["format"] == "" and float(parsed[2]["chapter_F1_lo"]) <= float(parsed[2]["chapter_F1"])
