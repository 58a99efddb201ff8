"""`deepicd score`: streaming, ordered, atomic, and clear about bad rows."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from deepicd.cli import app

runner = CliRunner()


def write_jsonl(path, rows):
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


def test_scores_rows_in_order(tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", [
        {"id": "a", "completion": "chest pain</think>\n<diagnosis>I21.4</diagnosis>", "gold": ["I214"]},
        {"completion": "", "gold": "I10"},
        "",
        {"id": 3, "completion": "x</think><diagnosis>M511</diagnosis>", "gold": "M5116", "note": "ignored without a judge"},
    ])
    target = tmp_path / "out" / "scored.jsonl"
    result = runner.invoke(app, ["score", "--preset", "paper", "-i", str(source), "-o", str(target)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    assert [row.get("id") for row in rows] == ["a", None, 3]
    assert rows[0]["reward"] == 61.0 and rows[0]["exact"] is True and rows[0]["prediction"] == "I214"
    assert rows[1] == {"reward": -6.0, "outcome": -1.0, "format": 0.0, "extra_pairs": 0.0, "empty": -5.0,
                       "prediction": None, "valid": False, "exact": False}
    assert rows[2]["outcome"] == 42.0 and rows[2]["exact"] is False


def test_overrides_reach_the_reward(tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", [{"completion": "x</think><diagnosis>C4A0</diagnosis>", "gold": "C4A0"}])
    target = tmp_path / "out.jsonl"
    assert runner.invoke(app, ["score", "-p", "paper", "-i", str(source), "-o", str(target), "code_pattern=paper"]).exit_code == 0
    assert json.loads(target.read_text())["outcome"] == -1.0
    # An existing output is replaced only with --overwrite.
    kept = runner.invoke(app, ["score", "-p", "paper", "-i", str(source), "-o", str(target)])
    assert kept.exit_code == 2 and "exists; pass --overwrite" in kept.output
    assert json.loads(target.read_text())["outcome"] == -1.0
    assert runner.invoke(app, ["score", "-p", "paper", "-i", str(source), "-o", str(target), "--overwrite"]).exit_code == 0
    assert json.loads(target.read_text())["outcome"] > 0


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "line 2: not valid JSON"),
        ('{"gold": "I10"}', "line 2: missing field 'completion'"),
        ('{"completion": 5, "gold": "I10"}', "line 2: 'completion' must be a string"),
        ('{"completion": "x", "gold": []}', "line 2: 'gold' must be a code or a non-empty list"),
        ('[1, 2]', "line 2: expected a JSON object"),
    ],
)
def test_bad_rows_name_the_line_and_write_nothing(tmp_path, line, message):
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"completion": "", "gold": "I10"}) + "\n" + line + "\n")
    target = tmp_path / "out.jsonl"
    result = runner.invoke(app, ["score", "--preset", "paper", "-i", str(source), "-o", str(target)])
    assert result.exit_code == 2
    output = result.output.replace("\n", "")
    assert f"{source}:2" in output
    assert message.split(": ", 1)[1] in output
    assert not target.exists()
    assert list(tmp_path.iterdir()) == [source]


def test_non_utf8_bytes_are_reported(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_bytes(b'{"completion": "\xff", "gold": "I10"}\n')
    result = runner.invoke(app, ["score", "--preset", "paper", "-i", str(source), "-o", str(tmp_path / "o.jsonl")])
    assert result.exit_code == 2 and "not UTF-8" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--preset", "nope"], "unknown rewards preset 'nope'"),
        (["--preset", "paper", "outcome.bogus=1"], "outcome.bogus"),
        (["--preset", "paper", "outcome.match=abc"], "outcome.match"),
        ([], "exactly one of --preset"),
        (["--preset", "paper", "--config", "x.yaml"], "exactly one of --preset"),
    ],
)
def test_bad_configuration_is_named(tmp_path, args, message):
    source = write_jsonl(tmp_path / "in.jsonl", [{"completion": "", "gold": "I10"}])
    result = runner.invoke(app, ["score", "-i", str(source), "-o", str(tmp_path / "o.jsonl"), *args])
    assert result.exit_code == 2
    assert message in result.output.replace("\n", "")


def test_missing_input_file(tmp_path):
    result = runner.invoke(app, ["score", "-p", "paper", "-i", str(tmp_path / "absent.jsonl"), "-o", str(tmp_path / "o.jsonl")])
    assert result.exit_code == 2 and "input file not found" in result.output


def test_streams_many_rows_in_bounded_batches(tmp_path):
    rows = [{"completion": f"r</think><diagnosis>I1{i % 10}</diagnosis>", "gold": "I10"} for i in range(5000)]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    target = tmp_path / "o.jsonl"
    result = runner.invoke(app, ["score", "-p", "paper", "-i", str(source), "-o", str(target), "--batch-size", "7"])
    assert result.exit_code == 0
    scored = [json.loads(line) for line in target.read_text().splitlines()]
    assert len(scored) == 5000
    assert [row["exact"] for row in scored[:10]] == [True] + [False] * 9


def test_help_explains_the_fields():
    result = runner.invoke(app, ["score", "--help"])
    assert result.exit_code == 0
    assert "completion" in result.output and "gold" in result.output


def test_an_empty_input_is_an_error_and_writes_nothing(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text("\n\n")
    target = tmp_path / "out.jsonl"
    result = runner.invoke(app, ["score", "--preset", "paper", "-i", str(source), "-o", str(target)])
    assert result.exit_code == 2 and "holds no rows to score" in result.output
    assert not target.exists()


def test_the_input_is_never_the_output(tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", [{"completion": "", "gold": "I10"}])
    before = source.read_text()
    result = runner.invoke(app, ["score", "--preset", "paper", "-i", str(source), "-o", str(tmp_path / "." / "in.jsonl")])
    assert result.exit_code == 2 and "is the input file (-i)" in result.output
    assert source.read_text() == before
