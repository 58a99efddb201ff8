"""The paper's evaluation settings: presets, the prompt-length filter, the CPU cost note, code-only answers."""

from __future__ import annotations

import json

import pytest
from evalkit import TEST, answer, write_jsonl
from split_writer import write_split
from typer.testing import CliRunner

from deepicd.cli import app
from deepicd.errors import ConfigError
from deepicd.evaluate.config import load_evaluate_config

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, ["evaluate", *args])


def test_paper_preset_samples_like_the_published_code():
    paper = load_evaluate_config("paper")
    s = paper.sampling
    # Qwen2.5-Instruct's generation_config.json, which the published code's bare llm.generate() used.
    assert (s.temperature, s.top_p, s.top_k, s.repetition_penalty, s.min_p) == (0.7, 0.8, 20, 1.05, 0.0)
    assert s.max_new_tokens == 1024 and s.n == 1
    assert paper.labels == "all-splits" and paper.nil_scope == "level" and paper.leading_code == "levels"
    assert paper.max_prompt_tokens == 0  # the published filter measured len() of a dict and dropped nothing
    llama = load_evaluate_config("paper-llama3.1").sampling
    assert (llama.temperature, llama.top_p, llama.top_k, llama.repetition_penalty) == (0.6, 0.9, 0, 1.0)
    default = load_evaluate_config("default")
    assert default.sampling.temperature == 0.0 and default.nil_scope == "level"  # deterministic, scored as the paper


def test_code_only_needs_an_empty_prefill():
    assert load_evaluate_config("code-only").prefill == ""
    with pytest.raises(ConfigError, match="prefill"):
        load_evaluate_config("default", ["prompt=code-only"])
    with pytest.raises(ConfigError, match="max_prompt_tokens"):
        load_evaluate_config("default", ["max_prompt_tokens=-1"])


def test_cpu_cost_note_names_the_worst_case():
    from deepicd.evaluate.generation import cpu_cost_note

    config = load_evaluate_config("default", ["generator.device=cpu"])
    note = cpu_cost_note(config, 18654)
    assert note is not None and "1,024" in note and "18,654 notes" in note and "19,101,696 tokens" in note
    assert "sampling.max_new_tokens" in note
    assert cpu_cost_note(load_evaluate_config("default", ["generator.device=cpu", "sampling.max_new_tokens=64"]), 10) is None
    assert cpu_cost_note(load_evaluate_config("default", ["generator.backend=vllm"]), 10) is None
    sampled = load_evaluate_config("default", ["generator.device=cpu", "sampling.temperature=0.7", "sampling.n=4"])
    assert "x 4 samples" in cpu_cost_note(sampled, 10)


def test_prompt_filter_on_recorded_prompt_lengths(tmp_path, data_dir):
    rows = [{"id": f"n{i}", "gold": gold, "completion": answer(gold), "prompt_tokens": 1000 + 500 * i}
            for i, gold in enumerate(TEST)]
    path = write_jsonl(tmp_path / "generations.jsonl", rows)
    out = tmp_path / "eval"
    result = run("--predictions", str(path), "--data", str(data_dir), "--out", str(out), "bootstrap.samples=0",
                 "plots=false", "max_prompt_tokens=2048")
    assert result.exit_code == 0, result.output
    assert "3 of 6 notes dropped" in result.output.replace("\n", " ")
    m = json.loads((out / "metrics.json").read_text())
    assert m["n"] == 3
    assert m["prompt_filter"]["dropped"] == 3 and m["prompt_filter"]["dropped_examples"] == ["n3", "n4", "n5"]
    assert "3 of 6 notes dropped" in (out / "report.md").read_text()

    rows[0].pop("prompt_tokens")
    bare = write_jsonl(tmp_path / "bare.jsonl", rows)
    refused = run("--predictions", str(bare), "--out", str(tmp_path / "bare"), "max_prompt_tokens=2048")
    assert refused.exit_code == 2 and "'prompt_tokens' for id n0" in refused.output.replace("\n", " ")


def test_all_splits_needs_a_data_folder(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"gold": "I214", "completion": answer("I214")}])
    result = run("--predictions", str(path), "--out", str(tmp_path / "o"), "--labels", "all-splits")
    assert result.exit_code == 2 and "labels=all-splits needs --data" in result.output.replace("\n", " ")


def test_all_splits_label_space_counts_every_split(tmp_path, data_dir):
    path = write_jsonl(tmp_path / "p.jsonl", [{"gold": g, "completion": answer(g)} for g in TEST])
    out = tmp_path / "eval"
    result = run("--predictions", str(path), "--data", str(data_dir), "--out", str(out), "--labels", "all-splits",
                 "bootstrap.samples=0", "plots=false")
    assert result.exit_code == 0, result.output
    m = json.loads((out / "metrics.json").read_text())
    assert m["label_space"]["source"].startswith("first codes of train, val and test")
    assert m["label_space"]["size"]["full_code"] == 4 and m["full_code"]["macro_f1"] == 1.0
    manifest = json.loads((out / "manifest.json").read_text())
    assert {"labels_train", "labels_val", "labels_test"} <= set(manifest["inputs"])


def test_code_only_answers_are_read_without_a_think_block(tmp_path, data_dir):
    completions = ["<diagnosis>I214</diagnosis>", "The code is J18.9.", "", "K359", "pneumonia", "<diagnosis>I21.4</diagnosis>"]
    path = write_jsonl(tmp_path / "p.jsonl", [{"gold": g, "completion": c} for g, c in zip(TEST, completions)])
    out = tmp_path / "eval"
    result = run("--predictions", str(path), "--data", str(data_dir), "--out", str(out), "--code-only",
                 "bootstrap.samples=0", "plots=false")
    assert result.exit_code == 0, result.output
    m = json.loads((out / "metrics.json").read_text())
    assert m["prompt"] == "code-only"
    assert m["format_rate"] == pytest.approx(4 / 6)
    assert m["full_code"]["micro_f1"] == pytest.approx(4 / 6)  # all but the empty and the free-text answer
    assert json.loads((out / "manifest.json").read_text())["prompts"]["target"] == "outcome-only"
    # The same completions read as reasoning answers have no pair at all.
    reasoning = tmp_path / "reasoning"
    assert run("--predictions", str(path), "--data", str(data_dir), "--out", str(reasoning), "bootstrap.samples=0",
               "plots=false").exit_code == 0
    assert json.loads((reasoning / "metrics.json").read_text())["format_rate"] == 0.0


@pytest.mark.slow
def test_model_mode_drops_long_prompts_before_generating(tmp_path, tiny_model, data_dir):
    import pandas as pd

    from deepicd.split_tables import read_notes
    from deepicd.evaluate.prompt_filter import filter_notes

    test = pd.read_parquet(data_dir / "test.parquet")
    test.loc[1, "text"] += "\n\nPHYSICAL EXAM: " + "normal findings " * 200  # one note far longer than the others
    write_split(data_dir, "test", test)
    config = load_evaluate_config("default", ["max_prompt_tokens=100000"])
    config.generator.model = str(tiny_model)
    notes = read_notes(data_dir, "test", columns=())
    kept, outcome = filter_notes(notes, config)
    assert len(kept) == len(notes) and outcome.dropped == 0 and outcome.longest > 20
    config.max_prompt_tokens = outcome.longest - 1
    kept, outcome = filter_notes(notes, config)
    assert outcome.dropped == 1 and outcome.dropped_ids == ["30001"] and len(kept) == len(notes) - 1

    out = tmp_path / "eval"
    result = run("--model", str(tiny_model), "--data", str(data_dir), "--out", str(out), "--limit", "3",
                 f"max_prompt_tokens={outcome.longest - 1}", "sampling.max_new_tokens=4", "generator.device=cpu",
                 "bootstrap.samples=0", "plots=false")
    assert result.exit_code == 0, result.output
    assert "dropped 1 of 3 notes" in result.output.replace("\n", " ")
    m = json.loads((out / "metrics.json").read_text())
    assert m["prompt_filter"]["notes"] == 3 and m["prompt_filter"]["dropped"] == 1 and m["n"] == 2
