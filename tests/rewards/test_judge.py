"""The judge client against a fault-injecting OpenAI-compatible server on loopback.

The shared fake server (tests/fake_openai.py) answers each request according to a script chosen by a marker
in the admission note (`case=<name>`): hangs, 500s, 429s with Retry-After,
malformed and out-of-range answers. Every test checks that every row gets a
verdict, none is lost or reordered, and the batch ends in bounded time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import threading
import time

import pytest
from fake_openai import HANG, FakeOpenAIServer, Reply, completion
from typer.testing import CliRunner

from deepicd.errors import ConfigError
from deepicd.endpoints import EndpointRefused
from deepicd.prompts import judge as judge_prompt
from deepicd.rewards.config import JudgeConfig, load_reward_config
from deepicd.rewards.judge import build_judge, percentile, retry_after_seconds
from deepicd.rewards.judge_cache import JudgeCache, JudgeCacheError
from deepicd.rewards.scorer import JudgeRequest, RewardScorer
from deepicd.serving import free_port

CASE = re.compile(r"case=([\w-]+)")

# Each script is the list of replies to successive attempts; the last one repeats.
SCRIPTS = {
    "ok4": [("json", '{"score": 4}')],
    "fenced1": [("json", 'Sure.\n```json\n{"score": 1}\n```')],
    "lone5": [("json", "5")],
    "error-then-5": [("status", 500), ("json", '{"score": 5}')],
    "busy-then-3": [("retry-after", "0.4"), ("json", '{"score": 3}')],
    "hang-then-2": [("hang", None), ("json", '{"score": 2}')],
    "malformed": [("json", "The reasoning is quite good overall.")],
    "out-of-range": [("json", '{"score": 9}')],
    "not-json": [("raw", b"<html>oops</html>")],
    "always-down": [("status", 503)],
    "always-hangs": [("hang", None)],
    "not-found": [("status", 404)],
    "slow-ok": [("slow", (0.15, '{"score": 4}'))],
}


class FakeJudgeServer(FakeOpenAIServer):
    """The shared fake server, answering each request by the script its note names; every attempt is timed."""

    def __init__(self, models: list[str] | None = None) -> None:
        self.attempts: dict[str, list[float]] = {}
        super().__init__(self._answer, ["fake-judge"] if models is None else models)

    def _answer(self, path: str, body: dict) -> Reply:
        text = body["prompt"] if "prompt" in body else body["messages"][-1]["content"]
        case = CASE.search(text).group(1)
        with self.lock:
            attempt = len(self.attempts.setdefault(case, []))
            self.attempts[case].append(time.monotonic())
        script = SCRIPTS[case]
        kind, value = script[min(attempt, len(script) - 1)]
        if kind == "hang":
            return HANG
        if kind == "status":
            return Reply(value, {"error": "injected"})
        if kind == "retry-after":
            return Reply(429, {"error": "busy"}, {"Retry-After": value})
        if kind == "raw":
            return Reply(200, value)
        delay, value = value if kind == "slow" else (0.0, value)
        return completion(body, [value], delay_s=delay)


@pytest.fixture
def server():
    with FakeJudgeServer() as running:
        yield running


def request(case: str, code: str = "I214", trace: str = "Chest pain with ST changes suggests NSTEMI.") -> JudgeRequest:
    return JudgeRequest(note=f"CHIEF COMPLAINT: chest pain case={case}", prediction=code, trace=trace)


def config_for(server: FakeJudgeServer, **overrides) -> JudgeConfig:
    settings = dict(url=server.url, model="fake-judge", timeout_s=0.5, retries=3, backoff_s=0.05, batch_deadline_s=10.0)
    settings.update(overrides)
    return JudgeConfig(**settings)


def rate(judge, requests):
    return asyncio.run(judge.rate_many(requests))


def test_faults_every_row_gets_a_verdict_in_bounded_time(server):
    cases = list(SCRIPTS)
    judge = build_judge(config_for(server, concurrency=4))
    judge.prompt(request("ok4"))  # loads the ICD-10-CM release outside the timed part
    started = time.monotonic()
    verdicts = rate(judge, [request(case) for case in cases])
    elapsed = time.monotonic() - started
    got = {case: (v.score, v.status) for case, v in zip(cases, verdicts)}
    assert got == {
        "ok4": (4, "ok"),
        "fenced1": (1, "ok"),
        "lone5": (5, "ok"),
        "error-then-5": (5, "ok"),
        "busy-then-3": (3, "ok"),
        "hang-then-2": (2, "ok"),
        "malformed": (None, "unparsed"),
        "out-of-range": (None, "unparsed"),
        "not-json": (None, "unparsed"),
        "always-down": (None, "fallback"),
        "always-hangs": (None, "fallback"),
        "not-found": (None, "fallback"),
        "slow-ok": (4, "ok"),
    }
    # Four attempts at 0.5 s each plus short backoffs bound the slowest row.
    assert elapsed < 4.0
    # Retry-After was honoured, and retries happened only where they could help.
    first, second = server.attempts["busy-then-3"]
    assert second - first >= 0.4
    assert len(server.attempts["always-down"]) == 4  # the first try and three retries
    assert len(server.attempts["always-hangs"]) == 4
    assert len(server.attempts["not-found"]) == 1  # a 404 is not retried
    assert len(server.attempts["malformed"]) == 1
    stats = judge.last_batch_stats
    assert stats["rows"] == len(cases)
    assert (stats["ok"], stats["unparsed"], stats["fallback"], stats["cached"]) == (7, 3, 3, 0)
    assert stats["retried"] == 1 + 1 + 1 + 3 + 3  # error, busy, hang, always-down, always-hangs
    assert stats["requests"] == server.requests
    assert 0 < stats["latency_p50_s"] <= stats["latency_p95_s"] < 4.0
    assert all(isinstance(value, float) for value in stats.values())


def test_batch_deadline_cuts_a_hanging_server_short(server):
    judge = build_judge(config_for(server, timeout_s=5.0, retries=10, batch_deadline_s=1.0))
    judge.prompt(request("ok4"))
    started = time.monotonic()
    verdicts = rate(judge, [request("always-hangs", trace=f"trace {i}") for i in range(6)] + [request("ok4")])
    elapsed = time.monotonic() - started
    assert [v.status for v in verdicts] == ["fallback"] * 6 + ["ok"]
    assert verdicts[-1].score == 4
    assert elapsed < 2.5


def test_retry_after_beyond_the_deadline_falls_back_at_once(server):
    SCRIPTS["busy-long"] = [("retry-after", "120"), ("json", '{"score": 3}')]
    try:
        judge = build_judge(config_for(server, batch_deadline_s=3.0))
        judge.prompt(request("busy-long"))
        started = time.monotonic()
        [verdict] = rate(judge, [request("busy-long")])
        assert verdict.status == "fallback"
        assert time.monotonic() - started < 1.5
    finally:
        del SCRIPTS["busy-long"]


def test_concurrency_limit_holds_across_batches_and_concurrent_callers(server):
    judge = build_judge(config_for(server, concurrency=3))
    requests = [request("slow-ok", trace=f"reasoning number {i}") for i in range(12)]
    verdicts = rate(judge, requests)
    assert [v.score for v in verdicts] == [4] * 12
    assert server.max_in_flight == 3

    # VERL's rate_limited manager calls once per sample, concurrently, on one loop.
    server.max_in_flight = 0
    more = [request("slow-ok", trace=f"another reasoning {i}") for i in range(9)]

    async def per_sample():
        return await asyncio.gather(*(judge.rate_many([r]) for r in more))

    results = asyncio.run(per_sample())
    assert [r[0].score for r in results] == [4] * 9
    assert server.max_in_flight == 3


def test_works_from_fresh_event_loops_and_threads(server):
    judge = build_judge(config_for(server))
    assert rate(judge, [request("ok4")])[0].score == 4
    assert rate(judge, [request("lone5")])[0].score == 5  # a second asyncio.run: a new loop

    found = {}

    def in_thread():
        loop = asyncio.new_event_loop()
        try:
            found["verdicts"] = loop.run_until_complete(
                judge.rate_many([request("fenced1"), request("ok4", trace="x")])
            )
        finally:
            loop.close()

    worker = threading.Thread(target=in_thread)
    worker.start()
    worker.join(10)
    assert [v.score for v in found["verdicts"]] == [1, 4]


def test_cache_serves_repeats_without_requests_and_skips_unparsed(server, tmp_path):
    cache_dir = tmp_path / "cache"
    rows = [request("ok4"), request("error-then-5"), request("malformed"), request("always-down")]
    judge = build_judge(config_for(server, cache_dir=str(cache_dir), retries=1))
    first = rate(judge, rows)
    assert [(v.score, v.status) for v in first] == [(4, "ok"), (5, "ok"), (None, "unparsed"), (None, "fallback")]
    sent = server.requests

    # A new judge on the same cache folder, as a restarted run or another worker would be.
    again = build_judge(config_for(server, cache_dir=str(cache_dir), retries=1))
    second = rate(again, rows)
    assert [(v.score, v.status) for v in second] == [
        (4, "cached"),
        (5, "cached"),
        (None, "unparsed"),
        (None, "fallback"),
    ]
    # Only the unparsed and fallback rows were asked again: 1 + 2 requests.
    assert server.requests == sent + 3
    assert again.last_batch_stats["cached"] == 2
    assert len(JudgeCache(cache_dir)) == 2
    # The cache stores hashes and scores only: no note text on disk.
    assert b"chest pain" not in (cache_dir / "judge-cache.sqlite3").read_bytes()

    # Another judge model must not reuse these ratings.
    other = build_judge(config_for(server, cache_dir=str(cache_dir), model="other-judge"))
    assert rate(other, rows[:1])[0].status == "ok"


def test_unusable_cache_file_is_reported_by_name(tmp_path):
    (tmp_path / "judge-cache.sqlite3").write_bytes(b"this is not a database" * 100)
    with pytest.raises(JudgeCacheError, match="judge-cache.sqlite3"):
        build_judge(JudgeConfig(model="m", cache_dir=str(tmp_path)))


def test_identical_prompts_in_one_batch_cost_one_request(server):
    judge = build_judge(config_for(server))
    verdicts = rate(judge, [request("ok4")] * 8)
    assert [v.score for v in verdicts] == [4] * 8
    assert server.requests == 1


def test_empty_model_asks_the_server_once(server):
    judge = build_judge(config_for(server, model=""))
    rate(judge, [request("ok4")])
    rate(judge, [request("lone5")])
    assert server.paths.count("/v1/models") == 1
    assert {body["model"] for body in server.bodies} == {"fake-judge"}
    assert judge.model == "fake-judge"


def test_server_listing_no_model_gives_fallback_not_an_exception():
    with FakeJudgeServer(models=[]) as empty:
        judge = build_judge(config_for(empty, model=""))
        verdicts = rate(judge, [request("ok4"), request("lone5")])
        assert [v.status for v in verdicts] == ["fallback", "fallback"]
        assert empty.requests == 0


def test_unreachable_server_falls_back_quickly():
    port = free_port()  # a loopback port nobody listens on
    judge = build_judge(JudgeConfig(url=f"http://127.0.0.1:{port}/v1", model="m", retries=2, backoff_s=0.05))
    judge.prompt(request("ok4"))
    started = time.monotonic()
    verdicts = rate(judge, [request("ok4"), request("lone5")])
    assert [v.status for v in verdicts] == ["fallback", "fallback"]
    assert time.monotonic() - started < 3.0
    assert judge.last_batch_stats["retried"] == 4


def test_prompt_carries_note_prediction_trace_tabular_text_and_guideline(server, guidelines_dir):
    judge = build_judge(config_for(server, guidelines_dir=str(guidelines_dir), temperature=0.3, max_tokens=7))
    rate(judge, [request("ok4", code="I214", trace="Troponin rise without ST elevation.")])
    body = server.bodies[0]
    assert body["model"] == "fake-judge" and body["temperature"] == 0.3 and body["max_tokens"] == 7
    assert body["top_p"] == 1.0
    system, user = body["messages"]
    assert system["role"] == "system" and '{"score": 3}' in system["content"]
    text = user["content"]
    assert "CHIEF COMPLAINT: chest pain" in text
    assert "Proposed ICD-10-CM code: I214" in text
    assert "Troponin rise without ST elevation." in text
    assert "Non-ST elevation (NSTEMI) myocardial infarction" in text  # tabular description
    assert "I21: Acute myocardial infarction" in text  # an ancestor
    assert "Hypertension with Heart Disease" in text  # chapter 9 guideline from the folder


def test_completions_api_extra_body_and_api_key(server, monkeypatch, caplog):
    monkeypatch.setenv("DEEPICD_TEST_JUDGE_KEY", "sk-very-secret")
    judge = build_judge(
        config_for(server, api="completions", api_key_env="DEEPICD_TEST_JUDGE_KEY", extra_body={"top_k": 1}, retries=0)
    )
    with caplog.at_level(logging.DEBUG):
        verdicts = rate(judge, [request("ok4"), request("always-down")])
    assert [v.score for v in verdicts] == [4, None]
    ok_body = next(b for b in server.bodies if "case=ok4" in b["prompt"])
    assert ok_body["prompt"].endswith(judge_prompt.COMPLETION_SUFFIX) and ok_body["top_k"] == 1
    assert server.paths[0] == "/v1/completions"
    assert all(h.get("Authorization") == "Bearer sk-very-secret" for h in server.headers)
    assert "sk-very-secret" not in repr(judge) and "sk-very-secret" not in caplog.text
    assert "chest pain" not in caplog.text  # notes are never logged
    assert "fell back" in caplog.text


def test_external_urls_are_refused_before_any_connection(monkeypatch):
    def no_connections(*args, **kwargs):
        raise AssertionError("a connection was attempted")

    monkeypatch.setattr(socket.socket, "connect", no_connections)
    monkeypatch.setattr(socket, "create_connection", no_connections)
    with pytest.raises(EndpointRefused, match="8.8.8.8"):
        build_judge(JudgeConfig(url="http://8.8.8.8/v1", model="m"))
    with pytest.raises(EndpointRefused):
        RewardScorer(load_reward_config("paper-judge", ["judge.url=http://8.8.8.8/v1"]))
    assert (
        build_judge(JudgeConfig(url="http://8.8.8.8/v1", model="m", allow_external_endpoint=True)).base_url
        == "http://8.8.8.8/v1"
    )
    assert build_judge(JudgeConfig(url="http://8.8.8.8/v1", model="m", allowed_hosts=["8.8.8.8"])).model == "m"


def test_bad_settings_name_their_key(tmp_path):
    with pytest.raises(ConfigError, match="judge.api"):
        build_judge(JudgeConfig(api="responses"))
    with pytest.raises(ConfigError, match="judge.concurrency"):
        build_judge(JudgeConfig(concurrency=0))
    with pytest.raises(ConfigError, match="judge.guidelines_dir"):
        build_judge(JudgeConfig(guidelines_dir=str(tmp_path / "missing")))


def test_judge_greedy_preset_through_the_scorer(server):
    config = load_reward_config(
        "judge-greedy",
        [f"judge.url={server.url}", "judge.model=fake-judge", "judge.timeout_s=0.5", "judge.backoff_s=0.05"],
    )
    assert config.name == "judge-greedy" and config.components[-1] == "judge" and config.judge.scale == 0.8
    assert config.outcome.match == 15.0  # inherited from the paper preset
    scorer = RewardScorer(config)
    note = "CHIEF COMPLAINT: chest pain case={}"
    rows = scorer.score_batch(
        [
            ("Troponin up.</think>\n<diagnosis>I214</diagnosis>", ["I214"], note.format("ok4")),
            ("Some text.</think>\n<diagnosis>I21</diagnosis>", ["I214"], note.format("malformed")),
            ("no answer at all", ["I214"], note.format("ok4")),
            ("   </think>\n<diagnosis>I214</diagnosis>", ["I214"], note.format("ok4")),
            ("Reasoning.</think>\n<diagnosis>I214</diagnosis>", ["I214"], note.format("always-down")),
        ]
    )
    judged = [(r.terms["judge"], r.judge_score, r.judge_status) for r in rows]
    assert judged[0] == (pytest.approx(3.2), 4, "ok")
    assert judged[1] == (0.0, None, "unparsed")
    assert judged[2] == (-0.8, None, "skipped")  # no pair: no call
    assert judged[3] == (-0.8, None, "skipped")  # blank trace: no call
    assert judged[4] == (0.0, None, "fallback")
    assert rows[0].total == pytest.approx(15 * 4 + 1 + 3.2)
    assert {"judge", "judge_score", "judge_status"} <= set(rows[0].as_row())
    assert server.requests == 1 + 1 + 4  # ok, malformed, and the failing row's four attempts


def test_retry_after_and_percentile_helpers():
    assert retry_after_seconds("2") == 2.0
    assert retry_after_seconds("-3") == 0.0
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == pytest.approx(10.0)
    assert percentile([], 0.5) == 0.0
    assert percentile([3.0, 1.0, 2.0, 4.0], 0.5) == 2.0
    assert percentile([float(i) for i in range(1, 101)], 0.95) == 95.0


def test_deepicd_score_refuses_an_external_judge(tmp_path):
    from deepicd.cli import app

    source = tmp_path / "in.jsonl"
    row = {"completion": "Chest pain.</think>\n<diagnosis>I214</diagnosis>", "gold": ["I214"], "note": "chest pain"}
    source.write_text(json.dumps(row) + "\n")
    outcome = CliRunner().invoke(
        app,
        [
            "score",
            "--preset",
            "paper-judge",
            "--judge-url",
            "http://8.8.8.8/v1",
            "--input",
            str(source),
            "--output",
            str(tmp_path / "o.jsonl"),
        ],
    )
    assert outcome.exit_code != 0
    assert "refusing to send MIMIC-derived text" in outcome.output
    assert not (tmp_path / "o.jsonl").exists()
