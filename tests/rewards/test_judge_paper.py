"""The `paper-judge` preset reproduces the published judge; `judge-greedy` keeps the earlier one.

Each test drives the scorer or the judge against the loopback fake server of
`test_judge.py` and checks one published behaviour: the request itself, the
code check on the raw diagnosis text, the reading of the reply, the rubric and
the whole-chapter guidelines.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from test_judge import SCRIPTS, FakeJudgeServer, config_for, rate, request

from deepicd import guidelines
from deepicd.errors import ConfigError
from deepicd.prompts import judge as judge_prompt
from deepicd.rewards.config import load_reward_config
from deepicd.rewards.judge import build_judge
from deepicd.rewards.scorer import RewardScorer

TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
REPLIES = {
    "half": [("json", '{"score": 4.5}')],
    "seven": [("json", '{"score": 7}')],
    "double-brace": [("json", '{{"score": 4}}')],
    "bare4": [("json", "4")],
}
NOTE = "CHIEF COMPLAINT: chest pain case={}"


def _save_tokenizer(folder: Path, template: str | None) -> Path:
    """A word-level tokenizer saved the way a model folder holds one, with or without a chat template."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]")
    if template is not None:
        tokenizer.chat_template = template
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def template_tokenizer(tmp_path_factory) -> Path:
    return _save_tokenizer(tmp_path_factory.mktemp("judge-tokenizer"), TEMPLATE)


@pytest.fixture
def server():
    SCRIPTS.update(REPLIES)
    try:
        with FakeJudgeServer() as running:
            yield running
    finally:
        for case in REPLIES:
            del SCRIPTS[case]


def paper_scorer(server, tokenizer, *extra: str, preset: str = "paper-judge") -> RewardScorer:
    overrides = [
        f"judge.url={server.url}",
        "judge.model=fake-judge",
        f"judge.tokenizer={tokenizer}",
        "judge.timeout_s=0.5",
        "judge.backoff_s=0.05",
        *extra,
    ]
    return RewardScorer(load_reward_config(preset, overrides))


def answer(code: str, think: str = "Troponin rise without ST elevation.") -> str:
    return f"{think}</think>\n<diagnosis>{code}</diagnosis>"


def test_paper_judge_sends_what_the_published_client_sent(server, template_tokenizer):
    scorer = paper_scorer(server, template_tokenizer)
    rows = scorer.score_batch([(answer("I214"), ["I214"], NOTE.format("ok4"))] * 3)
    assert [r.terms["judge"] for r in rows] == [pytest.approx(3.2)] * 3
    # One request per completion: identical requests are sampled separately.
    assert server.requests == 3 and scorer.judge.last_batch_stats["requests"] == 3
    assert set(server.paths) == {"/v1/completions"}
    body = server.bodies[0]
    assert "messages" not in body
    assert (body["model"], body["temperature"], body["top_p"], body["max_tokens"]) == ("fake-judge", 0.6, 0.9, 16)
    # The chat template is applied here, ending with the assistant's turn.
    assert body["prompt"].startswith("<|system|>\n" + judge_prompt.PAPER_SYSTEM + "<|end|>\n<|user|>\n")
    assert body["prompt"].endswith("<|end|>\n<|assistant|>\n")


def test_sampled_ratings_are_never_shared_or_cached(server, tmp_path, caplog):
    cache_dir = tmp_path / "cache"
    with caplog.at_level(logging.WARNING):
        sampled = build_judge(config_for(server, temperature=0.6, cache_dir=str(cache_dir)))
    assert "judge.cache_dir is not used while judge.temperature > 0" in caplog.text
    for _ in range(2):
        assert [v.status for v in rate(sampled, [request("ok4")] * 4)] == ["ok"] * 4
    assert server.requests == 8
    assert sampled.cache is None and not cache_dir.exists()

    greedy = build_judge(config_for(server, temperature=0.0))
    rate(greedy, [request("ok4")] * 4)
    assert server.requests == 8 + 1  # greedy decoding: identical prompts still share one request


def test_same_as_model_renders_with_the_listed_models_tokenizer(template_tokenizer):
    with FakeJudgeServer(models=[str(template_tokenizer)]) as listing:
        judge = build_judge(config_for(listing, model="", api="completions", tokenizer="same-as-model"))
        assert rate(judge, [request("ok4")])[0].score == 4
        body = listing.bodies[0]
        assert body["model"] == str(template_tokenizer)
        assert body["prompt"].startswith("<|system|>\n") and body["prompt"].endswith("<|assistant|>\n")


def test_a_tokenizer_that_cannot_render_fails_at_build(server, tmp_path):
    with pytest.raises(ConfigError, match="judge.tokenizer: cannot load"):
        build_judge(config_for(server, api="completions", tokenizer=str(tmp_path)))
    bare = _save_tokenizer(tmp_path / "bare", None)
    with pytest.raises(ConfigError, match="has no chat template"):
        build_judge(config_for(server, api="completions", tokenizer=str(bare)))


def test_code_is_checked_on_the_raw_text_for_the_judge_only(server, template_tokenizer):
    paper = paper_scorer(server, template_tokenizer)
    dotted, plain, padded = paper.score_batch(
        [(answer(code), ["I214"], NOTE.format("ok4")) for code in ("I21.4", "I214", " I214 ")]
    )
    # The outcome term strips the dot and pays the exact match; the judge term does not.
    assert dotted.terms["outcome"] == plain.terms["outcome"] == 60.0
    assert (dotted.terms["judge"], dotted.judge_status) == (-0.8, "skipped")
    assert (plain.judge_status, padded.judge_status) == ("ok", "ok")
    assert server.requests == 2

    greedy = paper_scorer(server, template_tokenizer, preset="judge-greedy")
    [result] = greedy.score_batch([(answer("I21.4"), ["I214"], NOTE.format("ok4"))])
    assert (result.terms["judge"], result.judge_status) == (pytest.approx(3.2), "ok")
    assert load_reward_config("paper-judge").judge.gate_on_raw_text is True
    assert load_reward_config("judge-greedy").judge.gate_on_raw_text is False


def test_replies_are_read_as_the_published_judge_read_them(server, template_tokenizer):
    cases = ["half", "seven", "double-brace", "bare4", "ok4"]
    items = [(answer("I214", think=f"Reasoning {case}."), ["I214"], NOTE.format(case)) for case in cases]
    paper = paper_scorer(server, template_tokenizer).score_batch(items)
    assert [r.terms["judge"] for r in paper] == pytest.approx([3.6, 5.6, 0.0, 0.0, 3.2])
    assert [r.judge_score for r in paper] == [4.5, 7, None, None, 4]
    assert [r.judge_status for r in paper] == ["ok", "ok", "unparsed", "unparsed", "ok"]

    greedy = paper_scorer(server, template_tokenizer, preset="judge-greedy").score_batch(items)
    assert [r.terms["judge"] for r in greedy] == pytest.approx([0.0, 0.0, 3.2, 3.2, 3.2])
    assert [r.judge_status for r in greedy] == ["unparsed", "unparsed", "ok", "ok", "ok"]


def test_paper_rubric_rates_the_reasoning_given_the_code(server, template_tokenizer):
    scorer = paper_scorer(server, template_tokenizer)
    scorer.score_batch([(answer("I214"), ["I214"], NOTE.format("ok4"))])
    prompt = server.bodies[0]["prompt"]
    assert judge_prompt.PAPER_SYSTEM in prompt
    assert "5 = excellent" in prompt and "1 = very poor" in prompt and '{"score": n}' in prompt
    assert "well chosen" not in prompt  # the extended rubric's criterion
    assert "Predicted ICD-10-CM code: I214" in prompt and "Troponin rise without ST elevation." in prompt

    greedy = paper_scorer(server, template_tokenizer, preset="judge-greedy")
    greedy.score_batch([(answer("I214", think="Other words."), ["I214"], NOTE.format("ok4"))])
    assert "code well chosen" in server.bodies[1]["messages"][0]["content"]


def test_paper_judge_passes_whole_chapters_and_names_their_source(server, template_tokenizer, guidelines_dir, caplog):
    whole = guidelines.chapter_excerpt(19, guidelines_dir, max_chars=0)
    assert len(whole) > 11_000
    scorer = paper_scorer(server, template_tokenizer, f"judge.guidelines_dir={guidelines_dir}")
    assert scorer.guidelines_source == scorer.judge.guidelines_source == f"files:{guidelines_dir.resolve()}"
    scorer.score_batch([(answer("S72001A"), ["S72001A"], NOTE.format("ok4"))])
    assert whole in server.bodies[0]["prompt"]  # not cut to 4,000 characters

    greedy = paper_scorer(server, template_tokenizer, f"judge.guidelines_dir={guidelines_dir}", preset="judge-greedy")
    assert greedy.judge.guideline("S72001A") == guidelines.truncate(whole, 4000)

    with caplog.at_level(logging.WARNING):
        fallback = paper_scorer(server, template_tokenizer)
    assert fallback.guidelines_source == "tabular-fallback"
    assert "judge.guidelines_dir is not set" in caplog.text


def test_guidelines_folder_without_chapter_files_is_refused(server, tmp_path):
    with pytest.raises(ConfigError, match="no chapter_<n>.json files"):
        build_judge(config_for(server, guidelines_dir=str(tmp_path)))


def test_paper_scores_survive_the_cache(server, tmp_path):
    """Greedy decoding with the published reader: 4.5 comes back from the cache as 4.5, not 4."""
    config = config_for(server, score_parser="paper", cache_dir=str(tmp_path))
    first = rate(build_judge(config), [request("half")])[0]
    again = asyncio.run(build_judge(config).rate_many([request("half")]))[0]
    assert (first.score, first.status) == (4.5, "ok")
    assert (again.score, again.status) == (4.5, "cached")
    # The same prompt read leniently must not reuse the published reader's rating.
    lenient = rate(build_judge(config_for(server, cache_dir=str(tmp_path))), [request("half")])[0]
    assert (lenient.score, lenient.status) == (None, "unparsed")


def test_a_template_that_refuses_the_messages_falls_back_and_says_why(server, tmp_path, caplog):
    refusing = _save_tokenizer(tmp_path / "refusing", "{{ raise_exception('system messages are not supported') }}")
    judge = build_judge(config_for(server, api="completions", tokenizer=str(refusing)))
    with caplog.at_level(logging.WARNING):
        verdicts = rate(judge, [request("ok4"), request("lone5")])
    assert [v.status for v in verdicts] == ["fallback", "fallback"]
    assert server.requests == 0
    assert "cannot render the judge's messages" in caplog.text


def test_new_settings_name_their_key(server):
    with pytest.raises(ConfigError, match="judge.rubric"):
        build_judge(config_for(server, rubric="strict"))
    with pytest.raises(ConfigError, match="judge.score_parser"):
        build_judge(config_for(server, score_parser="regex"))
    with pytest.raises(ConfigError, match="judge.top_p"):
        build_judge(config_for(server, top_p=0.0))
    with pytest.raises(ConfigError, match="judge.temperature"):
        build_judge(config_for(server, temperature=-1.0))
