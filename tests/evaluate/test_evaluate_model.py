"""`deepicd evaluate --model` end to end on the tiny model: generate, score, resume, refuse mixed settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from evalkit import TEST
from typer.testing import CliRunner

from deepicd.cli import app

runner = CliRunner()
FAST = ["sampling.max_new_tokens=12", "generator.device=cpu", "generator.batch_size=4", "bootstrap.samples=20", "plots=false"]


def run(*args: str):
    return runner.invoke(app, ["evaluate", *args])


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_model_mode_generates_scores_and_resumes(tmp_path, tiny_model, data_dir):
    out = tmp_path / "eval"
    base = ["--model", str(tiny_model), "--data", str(data_dir), "--out", str(out), "--limit", "4", *FAST]
    result = run(*base)
    assert result.exit_code == 0, result.output

    generations = lines(out / "generations.jsonl")
    assert [g["gold"] for g in generations] == TEST[:4]
    assert all(len(g["completions"]) == 1 for g in generations)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 4 and 0.0 <= metrics["full_code"]["macro_f1"] <= 1.0
    scored = lines(out / "predictions.jsonl")
    assert [row["id"] for row in scored] == [str(30000 + i) for i in range(4)]
    assert [row["completion"] for row in scored] == [g["completions"][0] for g in generations]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["result"]["mode"] == "model" and manifest["result"]["model"] == str(tiny_model)
    assert manifest["stage"] == "evaluate" and manifest["method"] is None  # the tiny model records no method
    assert manifest["inputs"]["split"]["sha256"] and manifest["outputs"]["predictions.jsonl"]["sha256"]
    assert manifest["prompts"]["evaluation"]

    # The same evaluation again does nothing.
    before = (out / "generations.jsonl").read_text()
    same = run(*base)
    assert same.exit_code == 0 and "already holds this run" in same.output
    # Rescoring with --overwrite reuses the generations made with the same settings.
    again = run(*base, "--overwrite", "--stage", "sft")
    assert again.exit_code == 0, again.output
    assert (out / "generations.jsonl").read_text() == before
    assert json.loads((out / "manifest.json").read_text())["method"] == "sft"

    # Other sampling settings must not be mixed into the same generations file: --overwrite starts over.
    changed = run(*base, "--overwrite", "sampling.max_new_tokens=8")
    assert changed.exit_code == 0, changed.output
    assert json.loads((out / "generations.settings.json").read_text())["sampling"]["max_new_tokens"] == 8
    assert len(lines(out / "generations.jsonl")) == 4
    refused = run("--model", str(tiny_model), "--data", str(data_dir), "--out", str(out), "--limit", "4",
                  *FAST[1:], "sampling.max_new_tokens=10")
    assert refused.exit_code == 2 and "--overwrite" in refused.output


@pytest.mark.slow
def test_model_mode_with_k_samples(tmp_path, tiny_model, data_dir):
    out = tmp_path / "eval"
    result = run("--model", str(tiny_model), "--data", str(data_dir), "--out", str(out), "--limit", "3", "--samples", "2",
                 "sampling.temperature=1.0", *FAST)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["k"] == 2 and metrics["self_consistency"]["k"] == 2
    assert all(len(row["completions"]) == 2 for row in lines(out / "predictions.jsonl"))

    greedy = run("--model", str(tiny_model), "--data", str(data_dir), "--out", str(tmp_path / "greedy"), "--samples", "2", *FAST)
    assert greedy.exit_code == 2 and "temperature" in greedy.output
