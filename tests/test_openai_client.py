"""The shared OpenAI-compatible client: the SDK's retries at our pace, the deadline, counts and the endpoint policy."""

from __future__ import annotations

import asyncio
import inspect
import time

import openai
import pytest
from fake_openai import FakeOpenAIServer, Reply, completion, error

from deepicd.endpoints import EndpointConfig, EndpointRefused
from deepicd.errors import DeepicdError
from deepicd.openai_client import CallStats, Endpoint, EndpointFailure, _PacedClient, backoff


def scripted(*replies: Reply) -> FakeOpenAIServer:
    """A server answering successive attempts with `replies`, the last one repeating."""
    seen = []

    def respond(path: str, body: dict) -> Reply:
        seen.append(path)
        reply = replies[min(len(seen) - 1, len(replies) - 1)]
        return completion(body, ["done"]) if reply is None else reply

    return FakeOpenAIServer(respond)


def ask(endpoint: Endpoint, **options):
    async def once():
        return await endpoint.call(
            lambda client: client.completions.create(model="m", prompt="p", max_tokens=1), **options
        )

    return asyncio.run(once())


def config(url: str, **changes) -> EndpointConfig:
    return EndpointConfig(**{"url": url, "timeout_s": 1.0, "retries": 3, "backoff_s": 0.01, **changes})


def test_the_retry_hook_is_one_the_sdk_calls():
    """The pace and the deadline live in an override of the SDK's retry sleep: an SDK without it must fail here."""
    ours = inspect.signature(_PacedClient._sleep_for_retry)
    theirs = inspect.signature(openai.AsyncOpenAI._sleep_for_retry)
    assert list(ours.parameters) == list(theirs.parameters)
    from openai._base_client import AsyncAPIClient

    assert "await self._sleep_for_retry(" in inspect.getsource(AsyncAPIClient.request)


@pytest.mark.parametrize("status", [408, 409, 429, 500, 503])
def test_what_the_sdk_retries_is_retried_and_counted(status):
    stats = CallStats()
    with scripted(error(status), error(status), None) as server:
        answer = ask(Endpoint(config(server.url)), stats=stats)
    assert answer.choices[0].text == "done"
    assert (stats.attempts, stats.retried, server.requests) == (3, 2, 3)
    assert stats.first_error == f"HTTP {status}"


def test_a_client_error_is_not_retried_and_says_so():
    stats = CallStats()
    with scripted(error(400, "prompt too long")) as server:
        with pytest.raises(EndpointFailure, match="HTTP 400 from .*prompt too long") as failure:
            ask(Endpoint(config(server.url)), stats=stats)
    assert failure.value.status == 400 and server.requests == 1 and stats.retried == 0
    assert isinstance(failure.value, DeepicdError)


def test_exhausted_retries_name_the_attempts_and_the_cause():
    with scripted(error(503)) as server:
        with pytest.raises(EndpointFailure, match=r"gave up after 3 attempt\(s\) at .*: HTTP 503"):
            ask(Endpoint(config(server.url, retries=2)))
    assert server.requests == 3


def test_retry_after_sets_the_wait_and_a_wait_past_the_deadline_is_not_taken():
    with scripted(Reply(429, {"error": "busy"}, {"Retry-After": "0.3"}), None) as server:
        started = time.monotonic()
        ask(Endpoint(config(server.url)))
        assert time.monotonic() - started >= 0.3
    with scripted(Reply(429, {"error": "busy"}, {"Retry-After": "60"}), None) as server:
        started = time.monotonic()
        with pytest.raises(EndpointFailure, match="no time left to retry"):
            ask(Endpoint(config(server.url)), deadline=time.monotonic() + 5)
        assert time.monotonic() - started < 2 and server.requests == 1


def test_the_deadline_cancels_a_call_in_flight():
    with scripted(Reply(hang=True)) as server:
        started = time.monotonic()
        with pytest.raises(EndpointFailure, match="deadline"):
            ask(Endpoint(config(server.url, timeout_s=30)), deadline=time.monotonic() + 0.5)
        assert time.monotonic() - started < 2


def test_backoff_doubles_from_the_first_wait_with_jitter():
    waits = [backoff(0.5, retry) for retry in range(4)]
    for retry, wait in enumerate(waits):
        assert 0.5 * 2**retry / 2 <= wait <= 0.5 * 2**retry
    assert backoff(10.0, 10) <= 30.0


def test_proxies_from_the_environment_are_ignored(monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.1:9")
    with scripted(None) as server:
        assert ask(Endpoint(config(server.url))).choices[0].text == "done"


def test_hosts_off_the_users_machines_are_refused_when_built():
    with pytest.raises(EndpointRefused, match="8.8.8.8"):
        Endpoint(EndpointConfig(url="http://8.8.8.8/v1"))
    assert Endpoint(EndpointConfig(url="http://8.8.8.8/v1", allowed_hosts=["8.8.8.8"])).url == "http://8.8.8.8/v1"
