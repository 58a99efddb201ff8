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
        fake_run(tmp_path, "sft-llama", 0.529, {"stage": "sft"}),
        fake_run(tmp_path, "mystery", 0.3, None),
        fake_run(tmp_path, "qwen7b", 0.394, {"method": "baseline", "stage": "evaluate"}),
        fake_run(tmp_path, "sftgrpo-llama", 0.595, {"stage": "sft-grpo"}, nested=True),
        fake_run(tmp_path, "grpo-32b", 0.498, {"stage": "grpo"}),
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
    other = fake_run(tmp_path / "runs", "qwen-base", 0.2, {"stage": "baseline"})

    out = tmp_path / "table"
    result = runner.invoke(app, ["report", str(evaluation), str(other), "--out", str(out)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((evaluation / "metrics.json").read_text())
    expected = f"{metrics['chapter']['macro_f1'] * 100:.1f}"
    assert "| grpo-tiny |" in result.output and expected in result.output
    assert (out / "table3.md").read_text() in result.output
    assert (out / "table3.csv").read_text().splitlines()[1].startswith("Baselines,qwen-base,")


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
    (tmp_path / "sft" / "manifest.json").write_text(json.dumps({"stage": "sft"}))
    assert model_stage(sft) == "sft"
    grpo = tmp_path / "grpo"
    grpo.mkdir()
    (grpo / "manifest.json").write_text(json.dumps({"stage": "sft-grpo"}))
    assert table.group_of(model_stage(grpo)) == "SFT+GRPO"
    stray = tmp_path / "other" / "model"
    stray.mkdir(parents=True)
    (tmp_path / "other" / "manifest.json").write_text(json.dumps({"stage": "preprocess"}))
    assert model_stage(stray) == ""
    assert model_stage("org/hub-model") == ""
