"""`deepicd evaluate --predictions`: outputs, hand-checked numbers, and clear errors."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from evalkit import TEST, answer, write_jsonl
from typer.testing import CliRunner

from deepicd.cli import app
from deepicd.config import available_presets
from deepicd.evaluate.config import load_evaluate_config
from deepicd.manifest import KEYS

runner = CliRunner()

# One answer per TEST note: exact, exact with a dot, empty, valid code outside the label space, free text, exact.
COMPLETIONS = [answer("I214"), answer("J18.9"), "", answer("K350"), answer("PNE"), answer("I214")]


def run(*args: str):
    return runner.invoke(app, ["evaluate", *args])


@pytest.fixture
def predictions(tmp_path: Path) -> Path:
    rows = [{"id": f"n{i}", "gold": [gold], "completion": text} for i, (gold, text) in enumerate(zip(TEST, COMPLETIONS))]
    return write_jsonl(tmp_path / "outputs.jsonl", rows)


def test_every_shipped_config_loads():
    presets = available_presets("evaluate")
    assert "default" in presets
    for name in presets:
        config = load_evaluate_config(name)
        assert config.bootstrap.samples >= 0


def test_nil_scope_all_makes_out_of_space_codes_nil_at_every_level(tmp_path, predictions, data_dir):
    out = tmp_path / "eval"
    result = run("--predictions", str(predictions), "--data", str(data_dir), "--out", str(out), "bootstrap.samples=0",
                 "nil_scope=all")
    assert result.exit_code == 0, result.output
    m = json.loads((out / "metrics.json").read_text())
    # K350 is outside the label space: NIL at category and chapter level too, so K35 and XI earn nothing.
    assert m["category"]["macro_f1"] == pytest.approx((1 + 2 / 3) / 5)
    # Chapter level has no NIL class: IX 1, X 2/3, XI 0, XIV 0.
    assert m["chapter"]["macro_f1"] == pytest.approx((1 + 2 / 3) / 4)
    assert m["chapter"]["micro_f1"] == pytest.approx(3 / 6)
    assert m["label_space"]["nil_scope"] == "all"


def test_default_projects_per_level_as_the_paper(tmp_path, predictions, data_dir):
    out = tmp_path / "eval"
    result = run("--predictions", str(predictions), "--data", str(data_dir), "--out", str(out), "bootstrap.samples=0",
                 "plots=false")
    assert result.exit_code == 0, result.output
    m = json.loads((out / "metrics.json").read_text())
    assert m["label_space"]["nil_scope"] == "level" and m["label_space"]["chapter_nil_class"] is False
    # K350 is no code of the label space, but its category K35 and chapter XI are.
    assert m["category"]["macro_f1"] == pytest.approx((1 + 2 / 3 + 1) / 5)
    assert m["chapter"]["macro_f1"] == pytest.approx((1 + 2 / 3 + 1) / 4)


def test_predictions_mode_writes_every_output_with_hand_checked_numbers(tmp_path, predictions, data_dir):
    out = tmp_path / "eval"
    # nil_scope=level: the published per-level projection, whose numbers are checked by hand below.
    result = run("--predictions", str(predictions), "--data", str(data_dir), "--out", str(out), "--stage", "grpo",
                 "bootstrap.samples=50", "nil_scope=level")
    assert result.exit_code == 0, result.output
    for name in ("predictions.jsonl", "metrics.json", "report.md", "manifest.json",
                 "per_chapter_f1.png", "chapter_confusion.png", "terciles_f1.png"):
        assert (out / name).is_file(), name
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob(".*")), "temporary files left behind"

    m = json.loads((out / "metrics.json").read_text())
    assert m["n"] == 6 and m["k"] == 1
    # Full code: I214 F1 1, J189 F1 2/3, K359 0, N390 0, NIL (3 predicted) 0.
    assert m["full_code"]["macro_f1"] == pytest.approx((1 + 2 / 3) / 5)
    assert m["full_code"]["micro_f1"] == pytest.approx(3 / 6)
    # K350 is outside the label space as a code but its category K35 and chapter XI are inside.
    assert m["category"]["macro_f1"] == pytest.approx((1 + 2 / 3 + 1) / 5)
    # No NIL class at chapter level: the empty and the free-text answer are misses of X and XIV.
    assert m["chapter"]["macro_f1"] == pytest.approx((1 + 2 / 3 + 1) / 4)
    assert m["chapter"]["micro_f1"] == pytest.approx(4 / 6)
    assert m["format_rate"] == pytest.approx(4 / 6)
    # Majority of train is I214 (chapter IX): F1 of I214 = 2*2/(2+6) over 4 gold classes.
    assert m["baselines"]["majority_full_code_macro_f1"] == pytest.approx(0.5 / 4)
    assert m["baselines"]["majority_chapter_macro_f1"] == pytest.approx(0.5 / 4)
    assert m["baselines"]["majority_source"] == "train"
    assert m["graded"] == pytest.approx({"exact": 3 / 6, "same_category": 1 / 6, "same_chapter": 0.0, "unrelated": 2 / 6})
    assert m["label_space"]["size"]["full_code"] == 4 and m["label_space"]["gold_outside"] == 0
    assert set(m["intervals"]) >= {"chapter", "category", "full_code", "confidence"}
    assert [r["chapter"] for r in m["per_chapter"]] == ["IX", "X", "XI", "XIV"]
    assert m["nil_rate"]["chapter"] == pytest.approx(2 / 6)
    assert {k: m["prompt_filter"][k] for k in ("max_prompt_tokens", "notes", "dropped", "kept")} == {
        "max_prompt_tokens": 0, "notes": 6, "dropped": 0, "kept": 6}
    assert m["leading_code_rate"] == 0.0
    assert m["terciles"]["full_code"]["frequency_source"] == "train"
    assert "self_consistency" not in m

    def fractions(value):
        if isinstance(value, dict):
            for key, inner in value.items():
                if key not in {"n", "k", "samples", "seed", "size", "gold_outside", "support", "predicted", "classes",
                               "min_frequency", "max_frequency", "chapter_confusion"}:
                    yield from fractions(inner)
        elif isinstance(value, list):
            for inner in value:
                yield from fractions(inner)
        elif isinstance(value, float):
            yield value

    assert all(0.0 <= v <= 1.0 for v in fractions({k: v for k, v in m.items() if k != "chapter_confusion"}))

    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [f"n{i}" for i in range(6)]
    assert rows[1]["prediction"] == "J189" and rows[1]["grade"] == "exact"
    assert rows[2]["prediction"] is None and rows[2]["levels"]["chapter"] == {"gold": "X", "prediction": "NIL"}
    assert rows[3]["levels"]["full_code"]["prediction"] == "NIL" and rows[3]["levels"]["category"]["prediction"] == "K35"
    assert rows[4]["prediction"] == "PNE" and rows[4]["valid"] is False and rows[4]["levels"]["chapter"]["prediction"] == "NIL"

    manifest = json.loads((out / "manifest.json").read_text())
    assert tuple(manifest) == KEYS and (manifest["stage"], manifest["method"]) == ("evaluate", "grpo")
    assert manifest["inputs"]["predictions"]["sha256"] == hashlib.sha256(predictions.read_bytes()).hexdigest()
    assert manifest["inputs"]["labels"]["sha256"] == hashlib.sha256((data_dir / "labels.csv").read_bytes()).hexdigest()
    assert manifest["config"]["bootstrap"]["samples"] == 50
    assert "numpy" in manifest["versions"]

    report = (out / "report.md").read_text()
    assert "| Full code | 12.5 [" not in report  # the majority value belongs in its own column
    assert "33.3" in report and "per_chapter_f1.png" in report
    assert "full_code" in result.output and "33.3" in result.output


def test_without_data_the_gold_codes_are_the_label_space(tmp_path, predictions):
    out = tmp_path / "eval"
    result = run("--predictions", str(predictions), "--out", str(out), "bootstrap.samples=0", "plots=false")
    assert result.exit_code == 0, result.output
    m = json.loads((out / "metrics.json").read_text())
    assert m["baselines"]["majority_source"] == "gold"
    assert m["label_space"]["source"].startswith("gold codes")
    assert set(m["intervals"]) == {"confidence", "samples", "seed"}
    assert not list(out.glob("*.png"))


def test_k_samples_give_self_consistency_and_majority_selection(tmp_path):
    rows = [
        {"id": "a", "gold": "I214", "completions": [answer("I219"), answer("I214"), answer("I214")]},
        {"id": "b", "gold": "J189", "completions": [answer("J189"), "", answer("K359")]},
    ]
    path = write_jsonl(tmp_path / "k.jsonl", rows)
    first = tmp_path / "first"
    assert run("--predictions", str(path), "--out", str(first), "bootstrap.samples=0", "plots=false").exit_code == 0
    m = json.loads((first / "metrics.json").read_text())
    assert m["k"] == 3
    assert m["self_consistency"]["agreement"]["full_code"] == pytest.approx((2 / 3 + 1 / 3) / 2)
    assert m["self_consistency"]["agreement"]["category"] == pytest.approx((1 + 1 / 3) / 2)
    assert m["full_code"]["micro_f1"] == pytest.approx(0.5)  # first samples: I219 (NIL), J189

    vote = tmp_path / "vote"
    result = run("--predictions", str(path), "--out", str(vote), "selection=majority", "bootstrap.samples=0", "plots=false")
    assert result.exit_code == 0, result.output
    assert json.loads((vote / "metrics.json").read_text())["full_code"]["micro_f1"] == pytest.approx(1.0)
    scored = [json.loads(line) for line in (vote / "predictions.jsonl").read_text().splitlines()]
    assert scored[0]["selected"] == 1 and scored[0]["predictions"] == ["I219", "I214", "I214"]


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"id": 1, "completion": "x"}'], r"outputs\.jsonl:1: missing field 'gold'"),
        (['{"gold": "I214", "completion": "x"}', '{"gold": "I214"}'], r":2: missing field 'completion'"),
        (['{"gold": "I214", "completion": "x"}', "", "{not json"], r":3: not valid JSON"),
        (['{"gold": [], "completion": "x"}'], r":1: 'gold' must be a code or a non-empty list"),
        (['{"gold": "I214", "completion": 5}'], r":1: 'completion' must be a string"),
        (['{"gold": "I214", "completions": ["a", "b"]}', '{"gold": "I214", "completions": ["a"]}'], r":2: 1 completions, but earlier rows have 2"),
        (["[1, 2]"], r":1: expected a JSON object"),
        (['{"gold": "I214", "completion": "x"}', '{"gold": "4019", "completion": "x"}'],
         r":2: 'gold' is '4019', not a well-formed ICD-10-CM code"),
        (['{"gold": "hello", "completion": "x"}'], r":1: 'gold' is 'hello', not a well-formed ICD-10-CM code"),
        (['{"id": "a", "gold": "I214", "completion": "x"}', '{"id": "b", "gold": "I214", "completion": "x"}',
          '{"id": "a", "gold": "J189", "completion": "y"}'], r":3: id 'a' already appeared on line 1"),
    ],
)
def test_bad_rows_are_reported_with_their_line(tmp_path, lines, message):
    path = tmp_path / "outputs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "eval"
    result = run("--predictions", str(path), "--out", str(out))
    assert result.exit_code == 2
    assert "error:" in result.output
    assert re.search(message, result.output.replace("\n", "")), result.output
    assert not out.exists() or not any(out.iterdir()), "nothing may be written for bad input"


def test_usage_errors(tmp_path, predictions, data_dir):
    cases = [
        (["--out", str(tmp_path / "o")], "exactly one of --model"),
        (["--predictions", str(predictions), "--model", "m", "--out", str(tmp_path / "o")], "exactly one of --model"),
        (["--model", "some/model", "--out", str(tmp_path / "o")], "--model needs --data"),
        (["--predictions", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "o")], "predictions file not found"),
        (["--predictions", str(predictions), "--labels", str(tmp_path / "nolabels.csv"), "--out", str(tmp_path / "o")], "labels file not found"),
        (["--predictions", str(predictions), "--data", str(tmp_path / "nodata"), "--out", str(tmp_path / "o")], "data folder not found"),
        (["--predictions", str(predictions), "--out", str(tmp_path / "o"), "selection=best"], "at key 'selection': 'best'; expected one of first, majority"),
        (["--predictions", str(predictions), "--out", str(tmp_path / "o"), "bootstrap.sample=3"], "bootstrap.sample"),
        (["--model", "m", "--data", str(data_dir), "--split", "holdout", "--out", str(tmp_path / "o")], "split 'holdout' not found"),
    ]
    for args, message in cases:
        result = run(*args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output.replace("\n", " "), (args, result.output)


def test_the_same_evaluation_is_kept_and_another_needs_overwrite(tmp_path, predictions):
    out = tmp_path / "eval"
    args = ["--predictions", str(predictions), "--out", str(out), "bootstrap.samples=0", "plots=false"]
    assert run(*args).exit_code == 0
    recorded = (out / "manifest.json").read_bytes()
    again = run(*args)
    assert again.exit_code == 0 and "already holds this run" in again.output and "notes scored" in again.output
    assert (out / "manifest.json").read_bytes() == recorded
    other = run(*args, "--stage", "sft")
    assert other.exit_code == 2 and "other settings (stage)" in other.output and "--overwrite" in other.output
    assert run(*args, "--stage", "sft", "--overwrite").exit_code == 0
    assert json.loads((out / "manifest.json").read_text())["method"] == "sft"
    # Scoring a file into the folder it came from would replace it.
    inside = run("--predictions", str(out / "predictions.jsonl"), "--out", str(out), "--overwrite")
    assert inside.exit_code == 2 and "is the input predictions" in inside.output


def test_labels_option_overrides_the_data_folder(tmp_path, predictions, data_dir):
    labels = tmp_path / "wide.csv"
    labels.write_text("code\nI214\nJ189\nK359\nK350\nN390\nNIL\n")
    out = tmp_path / "eval"
    result = run("--predictions", str(predictions), "--data", str(data_dir), "--labels", str(labels), "--out", str(out),
                 "bootstrap.samples=0", "plots=false")
    assert result.exit_code == 0, result.output
    m = json.loads((out / "metrics.json").read_text())
    assert m["label_space"]["size"]["full_code"] == 5
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert rows[3]["levels"]["full_code"]["prediction"] == "K350"


def test_train_counts_of_a_labels_file_stand_in_for_a_missing_train_split(tmp_path, predictions):
    labels = tmp_path / "labels.csv"
    labels.write_text("code,train_count\nJ189,9\nI214,4\nK359,2\nN390,1\nNIL,0\n")
    out = tmp_path / "eval"
    result = run("--predictions", str(predictions), "--labels", str(labels), "--out", str(out), "bootstrap.samples=0", "plots=false")
    assert result.exit_code == 0, result.output
    m = json.loads((out / "metrics.json").read_text())
    assert m["baselines"]["majority_source"] == "train (labels file counts)"
    assert m["baselines"]["majority_labels"] == {"chapter": "X", "category": "J18", "full_code": "J189"}
    assert m["terciles"]["full_code"]["head"]["max_frequency"] == 9

    labels.write_text("code,train_count\nJ189,many\n")
    bad = run("--predictions", str(predictions), "--labels", str(labels), "--out", str(tmp_path / "bad"))
    assert bad.exit_code == 2 and "'train_count' is not a number for code 'J189'" in bad.output.replace("\n", " ")


@pytest.mark.parametrize("k", [1, 3])
def test_fast_predictions_lines_equal_the_rows(k):
    import numpy as np

    from deepicd.evaluate.config import EvaluateConfig
    from deepicd.evaluate.evaluation import evaluate
    from deepicd.evaluate.inputs import Predictions

    texts = [answer("I214"), answer("I21.9"), "", answer("PNE"), answer("J189"), 'a "quoted" \u00e9</think>\n<diagnosis>K359</diagnosis>']
    completions = [[texts[(i + j) % len(texts)] for j in range(k)] for i in range(12)]
    gold = np.asarray([TEST[i % len(TEST)] for i in range(12)], dtype=object)
    predictions = Predictions([f"id-{i}" for i in range(12)], gold, completions)
    config = EvaluateConfig()
    config.bootstrap.samples = 0
    evaluation = evaluate(predictions, config)
    fast = [json.loads(line) for line in evaluation.lines()]
    assert fast == list(evaluation.rows())


def test_a_missing_model_leaves_nothing_behind(tmp_path, data_dir):
    out = tmp_path / "eval"
    result = run("--model", str(tmp_path / "no-model"), "--data", str(data_dir), "--out", str(out))
    assert result.exit_code == 2 and "model folder not found" in result.output.replace("\n", " ")
    assert not out.exists()
