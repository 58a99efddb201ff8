"""The one client for OpenAI-compatible servers: the judge, the distillation teacher and evaluation.

deepicd talks to three kinds of server (a judge that rates reasoning, a teacher
that writes traces, a model under evaluation), and all of them are `vllm serve`
or `transformers serve` on the user's own machines. They share this client,
built on the `openai` SDK, whose own retry loop decides what is retried
(connection errors, timeouts, 408, 409, 429 and 5xx) and honours Retry-After.
Only what the SDK cannot know is ours:

* the endpoint policy: the URL is checked before anything is sent, because
  MIMIC-derived text must stay on the user's machines, and proxy variables
  are ignored, because a proxy would be a third party;
* the pace of retries: the first wait is `backoff_s` (the SDK's is fixed at
  half a second), doubling after each retry, with jitter;
* a deadline: a retry whose wait would end after the caller's deadline is not
  taken, and a call still running at the deadline is cancelled, so a batch of
  judge ratings ends in bounded time;
* counts of attempts and retries and the first failure, for the judge's batch
  statistics and for error messages that say what happened;
* one SDK client and one concurrency limit per event loop: training engines
  call from several loops (VERL may use a fresh one per call, TRL its own
  thread's), and an HTTP client belongs to the loop that opened it.
"""

from __future__ import annotations

import asyncio
import contextvars
import email.utils
import random
import sys
import threading
import time
import weakref
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import AsyncIterator, Awaitable, Callable, TypeVar

import openai

from deepicd.endpoints import EndpointConfig, api_key_from_env, check_endpoint, redact
from deepicd.errors import DeepicdError

T = TypeVar("T")
_MAX_BACKOFF_S = 30.0


class EndpointFailure(DeepicdError):
    """A call that failed for good: retries exhausted, a 4xx that retrying cannot fix, or the deadline."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class CallStats:
    """What the calls sharing these stats cost: attempts sent, retries taken, the first failure seen."""

    attempts: int = 0
    retried: int = 0
    first_error: str = ""

    def error(self, reason: str) -> None:
        if not self.first_error:
            self.first_error = reason


# Set by `Endpoint.call` for the task making the call; read by the SDK hooks below, which run in that task.
_STATS: contextvars.ContextVar[CallStats | None] = contextvars.ContextVar("deepicd_call_stats", default=None)
_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("deepicd_call_deadline", default=None)


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), None if absent/invalid."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)


def backoff(first_s: float, retry: int) -> float:
    """The wait before retry number `retry` (0-based): `first_s` doubling, capped, jittered down to half."""
    base = min(first_s * 2**retry, _MAX_BACKOFF_S)
    return base / 2 + random.uniform(0, base / 2)


def _reason(failure: BaseException | None, response, timeout_s: float) -> str:
    """Why an attempt failed, in a few words (no URL, no body: both may be private)."""
    if response is not None:
        return f"HTTP {response.status_code}"
    if isinstance(failure, (TimeoutError, openai.APITimeoutError)) or "Timeout" in type(failure).__name__:
        return f"no answer within {timeout_s:g} s"
    return f"connection failed ({type(failure).__name__ if failure is not None else 'no reply'})"


class _PacedClient(openai.AsyncOpenAI):
    """The SDK client with our pace of retries and the caller's deadline (see the module docstring)."""

    def __init__(self, *, backoff_s: float, attempt_timeout_s: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self._deepicd_backoff_s = backoff_s
        self._deepicd_timeout_s = attempt_timeout_s

    @property
    def user_agent(self) -> str:  # what a server's access log shows for our requests
        return f"deepicd (openai-python {self._version})"

    async def _sleep_for_retry(self, *, retries_taken, max_retries, options, response) -> None:  # noqa: ARG002
        # The SDK calls this from inside its except-clause, once it has decided to retry; the failure
        # being handled is therefore the current exception.
        reason = _reason(sys.exc_info()[1], response, self._deepicd_timeout_s)
        stats = _STATS.get()
        if stats is not None:
            stats.error(reason)
        asked = retry_after_seconds(response.headers.get("Retry-After")) if response is not None else None
        wait = asked if asked is not None else backoff(self._deepicd_backoff_s, retries_taken)
        deadline = _DEADLINE.get()
        if deadline is not None and time.monotonic() + wait >= deadline:
            raise EndpointFailure(f"{reason}; no time left to retry within the deadline")
        if stats is not None:
            stats.retried += 1
        await asyncio.sleep(wait)


async def _count_attempt(request) -> None:  # noqa: ARG001 - httpx event hook signature
    stats = _STATS.get()
    if stats is not None:
        stats.attempts += 1


def _detail(exc: openai.APIStatusError) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        detail = body.get("detail") or body.get("message") or body.get("error")
        if detail:
            return str(detail)[:500]
    return str(exc)[:500]


class _LoopShare:
    """What the calls on one event loop share: the SDK client, the concurrency limit and a lock."""

    def __init__(self, concurrency: int) -> None:
        self.semaphore = asyncio.Semaphore(concurrency)
        self.lock = asyncio.Lock()  # for one-time work on this loop (the judge asks /models once)
        self.client: _PacedClient | None = None
        self.users = 0


class Endpoint:
    """One OpenAI-compatible server, checked against the endpoint policy when built.

    `call` runs one SDK request (with the SDK's retries) under the per-loop
    concurrency limit and an optional deadline; `session` keeps the loop's
    client open across many calls.
    """

    def __init__(self, config: EndpointConfig) -> None:
        # Refuses hosts off the user's machines (EndpointRefused) before anything is sent.
        self.url = check_endpoint(config.url, config.allowed_hosts, config.allow_external_endpoint).rstrip("/")
        self.config = config
        self._loops: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Endpoint({redact(self.url)!r})"

    def _share(self) -> _LoopShare:
        loop = asyncio.get_running_loop()
        with self._lock:
            share = self._loops.get(loop)
            if share is None:
                share = self._loops[loop] = _LoopShare(self.config.concurrency)
        return share

    def _new_client(self) -> _PacedClient:
        return _PacedClient(
            base_url=self.url,
            api_key=api_key_from_env(self.config.api_key_env),
            max_retries=self.config.retries,
            timeout=self.config.timeout_s,
            backoff_s=self.config.backoff_s,
            attempt_timeout_s=self.config.timeout_s,
            http_client=openai.DefaultAsyncHttpxClient(trust_env=False, event_hooks={"request": [_count_attempt]}),
        )

    @asynccontextmanager
    async def session(self) -> AsyncIterator[_LoopShare]:
        """This loop's client, opened on first use and closed when the last session on the loop ends."""
        share = self._share()
        share.users += 1
        if share.client is None:
            share.client = self._new_client()
        try:
            yield share
        finally:
            share.users -= 1
            if share.users == 0 and share.client is not None:
                client, share.client = share.client, None
                await client.close()

    async def call(
        self,
        request: Callable[[openai.AsyncOpenAI], Awaitable[T]],
        *,
        deadline: float | None = None,
        stats: CallStats | None = None,
    ) -> T:
        """`request(client)` with retries, within `deadline` (a `time.monotonic()` value); EndpointFailure if not."""
        stats = CallStats() if stats is None else stats
        async with self.session() as share, share.semaphore:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                stats.error("deadline reached")
                raise EndpointFailure("deadline reached before the request was sent")
            stats_token, deadline_token = _STATS.set(stats), _DEADLINE.set(deadline)
            try:
                return await asyncio.wait_for(request(share.client), timeout=remaining)
            except TimeoutError:  # asyncio.wait_for: the deadline, not one attempt's timeout
                stats.error("deadline reached")
                raise EndpointFailure("deadline reached while waiting for the server") from None
            except openai.APIStatusError as exc:
                reason = f"HTTP {exc.status_code}"
                stats.error(reason)
                if exc.status_code in (408, 409, 429) or exc.status_code >= 500:
                    raise self._gave_up(stats, f"{reason}: {_detail(exc)}", exc.status_code) from None
                raise EndpointFailure(f"{reason} from {redact(self.url)}: {_detail(exc)}", exc.status_code) from None
            except openai.APITimeoutError:
                reason = f"no answer within {self.config.timeout_s:g} s"
                stats.error(reason)
                raise self._gave_up(stats, reason) from None
            except openai.APIConnectionError as exc:
                reason = f"connection failed ({exc.__cause__ or exc})"
                stats.error(reason)
                raise self._gave_up(stats, reason) from None
            finally:
                _STATS.reset(stats_token)
                _DEADLINE.reset(deadline_token)

    def _gave_up(self, stats: CallStats, reason: str, status: int | None = None) -> EndpointFailure:
        return EndpointFailure(f"gave up after {stats.attempts} attempt(s) at {redact(self.url)}: {reason}", status)
