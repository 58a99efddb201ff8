"""The OpenAI-compatible backend: endpoint policy, retries, timeouts, concurrency and both server dialects.

Most tests talk to the shared loopback fake server (tests/fake_openai.py), whose
answer depends on a marker in the prompt ([flaky]: 500 then success, [hang]: never answers, ...),
so every failure path runs for real over HTTP. The slow tests use a real
`transformers serve` of the tiny model.
"""

from __future__ import annotations

import json
import socket
import time
from collections import Counter

import pytest
from fake_openai import HANG, FakeOpenAIServer, Reply, completion, error, prompt_text

from deepicd.errors import UserError
from deepicd.generate import GenerationRequest, GeneratorConfig, SamplingConfig, build_generator
from deepicd.generate.openai_backend import OpenAIGenerator
from deepicd.generate.render import prompt_ids, server_prompt_text
from deepicd.prompts import task

SAMPLE = SamplingConfig(temperature=0.9, max_new_tokens=16, n=2, seed=42)
MARKERS = ("[flaky]", "[busy]", "[hang]", "[bad]", "[one]", "[slow]")


class FakeServer(FakeOpenAIServer):
    """The shared fake server, misbehaving as the prompt's marker asks; `calls` counts attempts per marker."""

    def __init__(self) -> None:
        self.calls: Counter = Counter()
        super().__init__(self.answer)

    @property
    def peak(self) -> int:
        return self.max_in_flight

    def answer(self, path: str, body: dict) -> Reply:
        marker = next((m for m in MARKERS if m in prompt_text(body)), "[ok]")
        with self.lock:
            self.calls[marker] += 1
            count = self.calls[marker]
        if marker == "[hang]":
            return HANG
        if marker == "[flaky]" and count == 1:
            return error(500, "engine hiccup")
        if marker == "[busy]" and count == 1:
            return error(429, "slow down")
        if marker == "[bad]":
            return error(400, "prompt too long")
        n = 1 if marker == "[one]" else body.get("n", 1)
        texts = [f"{marker} seed={body.get('seed')} #{i}</think>\n<diagnosis>I10</diagnosis>" for i in range(n)]
        usage = {"prompt_tokens": 11, "completion_tokens": 5 * n, "total_tokens": 11 + 5 * n}
        return completion(body, texts, usage, delay_s=0.3 if marker == "[slow]" else 0.0)


@pytest.fixture()
def fake():
    with FakeServer() as server:
        yield server


def _config(url: str, **changes) -> GeneratorConfig:
    settings = {"backend": "openai", "model": "teacher", "url": url, "api": "chat", "progress": False,
                "retries": 2, "backoff_s": 0.05, "timeout_s": 1.0, "concurrency": 4}
    return GeneratorConfig(**{**settings, **changes})


def _request(key: str, note: str, prefill: str = "<think>") -> GenerationRequest:
    return GenerationRequest(key=key, messages=task.messages(note), prefill=prefill)


def test_failures_are_retried_or_reported_and_nothing_is_lost(fake):
    requests = [_request(name, f"note {marker}") for name, marker in
                [("ok", "plain"), ("flaky", "[flaky]"), ("busy", "[busy]"), ("hang", "[hang]"), ("bad", "[bad]")]]
    generator = build_generator(_config(fake.url))
    started = time.monotonic()
    results = list(generator.generate(requests, SAMPLE))
    elapsed = time.monotonic() - started
    by_key = {r.key: r for r in results}
    assert sorted(by_key) == sorted(r.key for r in requests) and len(results) == len(requests)
    for key in ("ok", "flaky", "busy"):
        assert by_key[key].error is None and len(by_key[key].completions) == 2
        assert by_key[key].prompt_tokens == 11
    assert fake.calls["[flaky]"] == 2 and fake.calls["[busy]"] == 2  # one failure, one retry
    assert fake.calls["[bad]"] == 1 and "HTTP 400" in by_key["bad"].error  # client errors are not retried
    assert by_key["bad"].completions == []
    assert fake.calls["[hang]"] == 3 and "no answer within 1 s" in by_key["hang"].error  # 1 try + 2 retries
    assert results[-1].key == "hang"  # results arrive as they finish, the stuck one last
    assert elapsed < 10


def test_concurrency_is_capped(fake):
    requests = [_request(f"r{i}", "[slow]") for i in range(8)]
    results = list(build_generator(_config(fake.url, concurrency=3)).generate(requests, SamplingConfig(n=1)))
    assert all(r.error is None for r in results) and len(results) == 8
    assert 2 <= fake.peak <= 3


def test_a_server_that_ignores_n_is_asked_again_with_new_seeds(fake):
    result, = build_generator(_config(fake.url)).generate([_request("a", "[one]")], SamplingConfig(n=3, seed=5))
    assert result.error is None and len(result.completions) == 3
    assert (fake.bodies[0]["n"], fake.bodies[0]["seed"]) == (3, 5)
    assert sorted((b["n"], b["seed"]) for b in fake.bodies[1:]) == [(1, 6), (1, 7)]
    assert len(set(result.completions)) == 3


def test_chat_prefill_is_a_continued_assistant_message(fake):
    request = _request("a", "chest pain")
    result, = build_generator(_config(fake.url)).generate([request], SAMPLE)
    body = fake.bodies[0]
    assert body["messages"][:-1] == request.messages
    assert body["messages"][-1] == {"role": "assistant", "content": "<think>"}
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
    assert body["n"] == 2 and body["seed"] == 42 and body["max_tokens"] == 16 and body["temperature"] == 0.9
    assert result.completions[0].startswith("[ok]")  # the text after the prefill, as the server sent it


def test_completions_send_the_locally_rendered_prompt(fake, tiny_model, tiny_tokenizer, task_requests):
    config = _config(fake.url, api="completions", model=str(tiny_model))
    results = list(build_generator(config).generate(task_requests, SAMPLE))
    assert len(results) == 3
    sent = sorted(body["prompt"] for body in fake.bodies)
    assert sent == sorted(server_prompt_text(tiny_tokenizer, r) for r in task_requests)
    assert all(body["prompt"].endswith("<|im_start|>assistant\n<think>") for body in fake.bodies)


def test_transformers_dialect_splits_n_and_asks_for_sampling(fake):
    config = _config(fake.url, server="transformers", api="chat")
    result, = build_generator(config).generate([_request("a", "note", prefill="")], SAMPLE)
    assert len(result.completions) == 2 and result.completion_tokens == [5, 5]
    assert sorted(body["seed"] for body in fake.bodies) == [42, 43]
    for body in fake.bodies:
        assert "n" not in body
        assert not {"top_k", "min_p", "repetition_penalty"} & set(body)  # transformers serve rejects them
        assert json.loads(body["generation_config"]) == {
            "do_sample": True, "temperature": 0.9, "top_p": 1.0, "top_k": 0, "min_p": 0.0,
            "repetition_penalty": 1.0, "typical_p": 1.0, "no_repeat_ngram_size": 0,
        }
    fake.bodies.clear()
    greedy, = build_generator(config).generate([_request("b", "note", prefill="")], SamplingConfig(temperature=0, n=2))
    assert greedy.completions == [greedy.completions[0]] * 2 and len(fake.bodies) == 1
    assert json.loads(fake.bodies[0]["generation_config"]) == {
        "do_sample": False, "temperature": 1.0, "top_p": 1.0, "top_k": 50,
        "repetition_penalty": 1.0, "typical_p": 1.0, "no_repeat_ngram_size": 0,
    }


FILTERED = SamplingConfig(temperature=0.7, top_p=0.8, top_k=20, min_p=0.05, repetition_penalty=1.05,
                          max_new_tokens=32, n=2, seed=11)


@pytest.mark.parametrize("api", ["chat", "completions"])
def test_vllm_dialect_states_every_sampling_setting(fake, api, tiny_model):
    config = _config(fake.url, api=api, model=str(tiny_model))
    result, = build_generator(config).generate([_request("a", "note")], FILTERED)
    assert result.error is None and len(fake.bodies) == 1
    body = fake.bodies[0]
    sent = {key: body.get(key) for key in
            ("temperature", "top_p", "top_k", "min_p", "repetition_penalty", "max_tokens", "seed", "n")}
    assert sent == {"temperature": 0.7, "top_p": 0.8, "top_k": 20, "min_p": 0.05, "repetition_penalty": 1.05,
                    "max_tokens": 32, "seed": 11, "n": 2}


def test_vllm_dialect_states_filters_that_are_off(fake):
    # Left out, vllm serve would fill them from the model's generation_config.json (Qwen2.5: top_k 20, 1.05).
    list(build_generator(_config(fake.url)).generate([_request("a", "note")], SamplingConfig(n=1)))
    body = fake.bodies[0]
    assert (body["top_k"], body["min_p"], body["repetition_penalty"]) == (-1, 0.0, 1.0)
    assert (body["temperature"], body["top_p"]) == (0.9, 1.0)


def test_greedy_requests_keep_the_repetition_penalty(fake):
    greedy = SamplingConfig(temperature=0, top_k=20, min_p=0.1, repetition_penalty=1.2, n=1)
    list(build_generator(_config(fake.url)).generate([_request("a", "note")], greedy))
    body = fake.bodies[0]
    assert (body["temperature"], body["top_k"], body["min_p"], body["repetition_penalty"]) == (0.0, -1, 0.0, 1.2)
    fake.bodies.clear()
    served = build_generator(_config(fake.url, server="transformers"))
    list(served.generate([_request("b", "note", prefill="")], greedy))
    settings = json.loads(fake.bodies[0]["generation_config"])
    assert settings["do_sample"] is False and settings["repetition_penalty"] == 1.2


def test_transformers_dialect_sends_the_filters_in_its_generation_config(fake):
    config = _config(fake.url, server="transformers", api="chat")
    list(build_generator(config).generate([_request("a", "note", prefill="")], FILTERED))
    assert len(fake.bodies) == 2
    for body in fake.bodies:
        assert (body["temperature"], body["top_p"], body["max_tokens"]) == (0.7, 0.8, 32)
        settings = json.loads(body["generation_config"])
        assert (settings["top_k"], settings["min_p"], settings["repetition_penalty"]) == (20, 0.05, 1.05)
        assert settings["do_sample"] is True


def test_transformers_dialect_refuses_chat_prefill_before_sending(fake):
    generator = build_generator(_config(fake.url, server="transformers", api="chat"))
    with pytest.raises(UserError, match="api=completions"):
        list(generator.generate([_request("a", "note")], SAMPLE))
    assert fake.bodies == []


def test_stopping_early_cancels_what_is_in_flight(fake):
    requests = [_request("fast", "plain")] + [_request(f"stuck{i}", "[hang]") for i in range(3)]
    generator = build_generator(_config(fake.url, timeout_s=20.0))
    started = time.monotonic()
    stream = generator.generate(requests, SamplingConfig(n=1))
    assert next(stream).key == "fast"
    stream.close()
    assert time.monotonic() - started < 10


def test_completions_need_a_local_tokenizer(fake):
    with pytest.raises(UserError, match="tokenizer_path"):
        OpenAIGenerator(_config(fake.url, api="completions", model="served-name"))


def test_external_url_is_refused_before_any_connection(monkeypatch):
    attempts = []

    def no_network(*args, **kwargs):
        attempts.append(args)
        raise AssertionError("a connection was attempted")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    for url in ("http://8.8.8.8/v1", "https://8.8.8.8:8000/v1"):
        with pytest.raises(UserError, match="refusing to send MIMIC-derived text"):
            build_generator(_config(url))
    # Opting in is explicit, and building the client still sends nothing.
    assert build_generator(_config("http://8.8.8.8/v1", allow_external_endpoint=True)).url == "http://8.8.8.8/v1"
    assert attempts == []


# -- a real `transformers serve` of the tiny model ------------------------------------------------------


@pytest.mark.slow
def test_real_transformers_serve_completions(transformers_server, untied_model, tiny_tokenizer, task_requests):
    config = GeneratorConfig(backend="openai", model=str(untied_model), url=transformers_server, api="completions",
                             server="transformers", concurrency=2, timeout_s=120, progress=False)
    results = {r.key: r for r in build_generator(config).generate(task_requests, SAMPLE)}
    assert sorted(results) == sorted(r.key for r in task_requests)
    for request in task_requests:
        result = results[request.key]
        assert result.error is None and len(result.completions) == 2
        assert all(1 <= count <= SAMPLE.max_new_tokens for count in result.completion_tokens)
        # The server tokenized exactly our prompt (template + prefill, nothing added).
        assert result.prompt_tokens == len(prompt_ids(tiny_tokenizer, request))

    greedy = SamplingConfig(temperature=0, max_new_tokens=8, n=1)
    local = build_generator(GeneratorConfig(model=str(untied_model), device="cpu", progress=False))
    expected = {r.key: r.completions for r in local.generate(task_requests, greedy)}
    served = {r.key: r.completions for r in build_generator(config).generate(task_requests, greedy)}
    assert served == expected
    # The prompts continue differently, so a server that mixed up requests would be caught.
    assert len({tuple(completions) for completions in expected.values()}) >= 2


@pytest.mark.slow
def test_real_transformers_serve_chat(transformers_server, untied_model):
    config = GeneratorConfig(backend="openai", model=str(untied_model), url=transformers_server, api="chat",
                             server="transformers", timeout_s=120, progress=False)
    short = SamplingConfig(n=1, max_new_tokens=6)
    plain, = build_generator(config).generate([_request("a", "note", prefill="")], short)
    assert plain.error is None and len(plain.completions) == 1 and plain.prompt_tokens > 0
    # vLLM's prefill extension is rejected by transformers serve: reported on the result, the run goes on.
    vllm_style = GeneratorConfig(**{**config.__dict__, "server": "vllm"})
    refused, = build_generator(vllm_style).generate([_request("b", "note")], short)
    assert refused.completions == [] and "HTTP 422" in refused.error and "continue_final_message" in refused.error
