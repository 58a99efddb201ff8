"""The judge end to end against a real `transformers serve` hosting the tiny model on loopback.

The tiny model's ratings are random text, so most replies are "unparsed"; what
this checks is the path itself: a real OpenAI-compatible server, both APIs, the
greedy preset with its cache, the paper preset with the model's own chat
template, and `deepicd score`, with nothing falling back.
"""

from __future__ import annotations

import importlib.util
import json

import pytest
from typer.testing import CliRunner

from deepicd import serving
from deepicd.rewards.config import load_reward_config
from deepicd.rewards.scorer import RewardScorer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

NOTE = "CHIEF COMPLAINT: chest pain\n\nPRESENT ILLNESS: crushing chest pain for two hours, troponin rising."
ROWS = [
    ("Troponin rise and chest pain without ST elevation.</think>\n<diagnosis>I214</diagnosis>", ["I214"], NOTE),
    ("Chest pain, likely cardiac.</think>\n<diagnosis>I209</diagnosis>", ["I214"], NOTE),
    ("no pair here", ["I214"], NOTE),
]


@pytest.fixture(scope="module")
def served(request, tmp_path_factory):
    """(base URL, model folder) of a `transformers serve` process; always stopped afterwards.

    The server is not pinned: the judge names the shared tiny model's folder in each request.
    """
    if not serving.transformers_cli().exists() or importlib.util.find_spec("fastapi") is None:
        pytest.skip("transformers serve needs the transformers CLI with fastapi and uvicorn")
    model = request.getfixturevalue("tiny_model")  # only once it is known the server can run
    with serving.transformers_server(tmp_path_factory.mktemp("judge-serve"), startup_timeout_s=120) as url:
        yield url, str(model)


def _overrides(url: str, model: str, *extra: str) -> list[str]:
    return [
        f"judge.url={url}",
        f"judge.model={model}",
        "judge.max_tokens=6",
        "judge.guideline_max_chars=300",
        "judge.timeout_s=60",
        "judge.concurrency=2",
        *extra,
    ]


@pytest.mark.parametrize("api", ["chat", "completions"])
def test_judge_greedy_against_transformers_serve(served, api, tmp_path):
    url, model = served
    config = load_reward_config(
        "judge-greedy", _overrides(url, model, f"judge.api={api}", f"judge.cache_dir={tmp_path}")
    )
    scorer = RewardScorer(config)
    results = scorer.score_batch(ROWS)
    statuses = [r.judge_status for r in results]
    assert statuses[2] == "skipped"
    assert set(statuses[:2]) <= {"ok", "unparsed"}, statuses  # the server answered both
    stats = scorer.judge.last_batch_stats
    assert (stats["requests"], stats["fallback"], stats["retried"]) == (2.0, 0.0, 0.0)
    assert stats["latency_p95_s"] > 0
    for result in results[:2]:
        expected = 0.8 * result.judge_score if result.judge_score is not None else 0.0
        assert result.terms["judge"] == pytest.approx(expected)

    # Scores come back from the cache; unparsed replies are asked again.
    again = RewardScorer(config).score_batch(ROWS)
    for first, second in zip(results[:2], again[:2]):
        assert second.judge_status == ("cached" if first.judge_status == "ok" else "unparsed")


def test_paper_judge_renders_with_the_served_models_chat_template(served):
    """The published path: /completions, the judge model's own chat template applied here, sampled ratings."""
    url, model = served
    config = load_reward_config("paper-judge", _overrides(url, model, "judge.max_tokens=16"))
    assert (config.judge.api, config.judge.tokenizer, config.judge.temperature) == ("completions", "same-as-model", 0.6)
    scorer = RewardScorer(config)
    results = scorer.score_batch([ROWS[0], ROWS[0], ROWS[2]])
    assert [r.judge_status for r in results][2] == "skipped"
    assert {r.judge_status for r in results[:2]} <= {"ok", "unparsed"}
    stats = scorer.judge.last_batch_stats
    assert (stats["requests"], stats["fallback"], stats["cached"]) == (2.0, 0.0, 0.0)  # no sharing when sampling


def test_deepicd_score_adds_the_judge_columns(served, tmp_path):
    from deepicd.cli import app

    url, model = served
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text("".join(json.dumps({"completion": c, "gold": g, "note": n}) + "\n" for c, g, n in ROWS))
    args = ["score", "--preset", "paper-judge", "--judge-url", url, "--judge-model", model]
    args += ["--input", str(source), "--output", str(target), *_overrides(url, model)[2:]]
    outcome = CliRunner().invoke(app, args)
    assert outcome.exit_code == 0, outcome.output
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    assert len(rows) == 3
    for row in rows:
        assert {"judge", "judge_score", "judge_status"} <= set(row)
    assert [row["judge_status"] for row in rows][2] == "skipped"
    assert {row["judge_status"] for row in rows[:2]} <= {"ok", "unparsed"}
