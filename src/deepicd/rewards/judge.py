"""The LLM judge: asks an OpenAI-compatible server to rate each reasoning trace 1-5.

A GRPO step may need hundreds of ratings, and the judge server is shared, slow
at times and sometimes down. A reward that hangs or raises stops training, so
this client is built to always return one verdict per request, in bounded time:

* at most `concurrency` requests in flight per event loop (a semaphore);
* each request cut off after `timeout_s`, retried with exponential backoff on
  connection errors, timeouts, 5xx and 429 (waiting as long as `Retry-After`
  asks), and the whole batch cut off at `batch_deadline_s`;
* whatever still has no score then gets `JudgeVerdict(None, "fallback")`, and a
  reply without a score in 1..5 gets `JudgeVerdict(None, "unparsed")`;
* ratings already paid for come from the on-disk cache (`judge_cache`).

MIMIC-IV notes must stay on the user's machines: the URL is checked with
`deepicd.endpoints.check_endpoint` when the judge is built, before any request.
The API key comes from the environment variable named in the config and is
never logged; neither are notes, prompts or server replies.

Training engines call from different event loops (VERL may use a fresh loop per
call, TRL its own thread's loop), so the HTTP client and the semaphore belong to
the loop that uses them: the client lives while calls on that loop are running
and is closed when the last one ends.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import math
import os
import random
import threading
import time
import weakref
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import aiohttp

from deepicd import guidelines, icd
from deepicd.config import ConfigError
from deepicd.endpoints import api_key_from_env, check_endpoint, redact
from deepicd.prompts import judge as judge_prompt
from deepicd.rewards.config import JudgeConfig
from deepicd.rewards.judge_cache import JudgeCache, cache_key
from deepicd.rewards.scorer import JudgeRequest, JudgeVerdict

log = logging.getLogger(__name__)

APIS = ("chat", "completions")
COUNT_KEYS = ("rows", "ok", "cached", "unparsed", "fallback", "retried", "requests")
_MAX_BACKOFF_S = 30.0


@dataclass
class _Answer:
    """What one prompt ended with, and how long its requests took."""

    score: int | None
    status: str
    latency_s: float | None = None


class _Retry(Exception):
    """A failure worth another attempt; `wait_s` is the server's Retry-After when it sent one."""

    def __init__(self, reason: str, wait_s: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.wait_s = wait_s


class _GiveUp(Exception):
    """A failure another attempt would not fix (a 4xx other than 408/429)."""


class _LoopResources:
    """The semaphore and HTTP client of one event loop."""

    def __init__(self, concurrency: int) -> None:
        self.semaphore = asyncio.Semaphore(concurrency)
        self.model_lock = asyncio.Lock()
        self.client: aiohttp.ClientSession | None = None
        self.users = 0


@dataclass
class _BatchCounters:
    retried: int = 0
    requests: int = 0
    first_error: str = ""

    def error(self, reason: str) -> None:
        if not self.first_error:
            self.first_error = reason


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


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (0.0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(math.ceil(fraction * len(ordered)) - 1, 0)
    return float(ordered[min(rank, len(ordered) - 1)])


@lru_cache(maxsize=8192)
def _code_text(code: str) -> str:
    return icd.tabular_text(code)


def validate(config: JudgeConfig) -> None:
    """Raise ConfigError naming the `judge.*` key whose value cannot work."""
    problems = []
    if config.api not in APIS:
        problems.append(f"judge.api must be one of {list(APIS)}, not {config.api!r}")
    if config.concurrency < 1:
        problems.append(f"judge.concurrency must be at least 1, not {config.concurrency}")
    if config.timeout_s <= 0:
        problems.append(f"judge.timeout_s must be positive, not {config.timeout_s}")
    if config.retries < 0:
        problems.append(f"judge.retries must be 0 or more, not {config.retries}")
    if config.backoff_s < 0:
        problems.append(f"judge.backoff_s must be 0 or more, not {config.backoff_s}")
    if config.batch_deadline_s <= 0:
        problems.append(f"judge.batch_deadline_s must be positive, not {config.batch_deadline_s}")
    if config.max_tokens < 1:
        problems.append(f"judge.max_tokens must be at least 1, not {config.max_tokens}")
    if config.guidelines_dir and not Path(config.guidelines_dir).expanduser().is_dir():
        problems.append(f"judge.guidelines_dir: folder not found: {config.guidelines_dir}")
    if problems:
        raise ConfigError("; ".join(problems))


class OpenAICompatibleJudge:
    """A `Judge` backed by any OpenAI-compatible server (vllm serve, transformers serve, a gateway)."""

    def __init__(self, config: JudgeConfig, cache: JudgeCache | None = None) -> None:
        validate(config)
        self.config = config
        # Refuses external hosts before anything is sent (EndpointRefused).
        self.base_url = check_endpoint(config.url, config.allowed_hosts, config.allow_external_endpoint).rstrip("/")
        self.model = config.model
        if cache is None and config.cache_dir:
            cache = JudgeCache(config.cache_dir)
        self.cache = cache
        api_key = api_key_from_env(config.api_key_env) if config.api_key_env else ""
        if config.api_key_env and not os.environ.get(config.api_key_env):
            log.warning("judge.api_key_env names %s, which is not set: sending no API key", config.api_key_env)
        self._headers = {"Authorization": f"Bearer {api_key}"} if config.api_key_env and api_key != "EMPTY" else {}
        self._guideline_dir = str(Path(config.guidelines_dir).expanduser()) if config.guidelines_dir else None
        self._guideline_by_chapter: dict[int, str] = {}
        self._loops: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        self.last_batch_stats: dict[str, float] = {}
        self.total_stats: dict[str, float] = {key: 0.0 for key in COUNT_KEYS}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={redact(self.base_url)!r}, model={self.model!r}, api={self.config.api!r})"

    def guideline(self, code: str) -> str:
        chapter = icd.chapter(code)
        if chapter is None:
            return ""
        with self._lock:
            text = self._guideline_by_chapter.get(chapter.number)
        if text is None:
            text = guidelines.chapter_excerpt(chapter.number, self._guideline_dir, self.config.guideline_max_chars)
            with self._lock:
                self._guideline_by_chapter[chapter.number] = text
        return text

    def prompt(self, request: JudgeRequest) -> list[dict[str, str]] | str:
        """The exact prompt sent for a request: chat messages, or one text for the completions API."""
        parts = (
            request.note,
            request.prediction,
            request.trace,
            _code_text(request.prediction),
            self.guideline(request.prediction),
        )
        if self.config.api == "completions":
            return judge_prompt.completion_prompt(*parts)
        return judge_prompt.messages(*parts)

    def _body(self, prompt: list[dict[str, str]] | str, model: str) -> dict:
        body = {
            "model": model,
            "temperature": self.config.temperature,
            "max_tokens": self.config.max_tokens,
            **self.config.extra_body,
        }
        body["messages" if self.config.api == "chat" else "prompt"] = prompt
        return body

    @staticmethod
    def _reply_text(data: object, api: str) -> str | None:
        try:
            choice = data["choices"][0]  # type: ignore[index]
            text = choice["message"]["content"] if api == "chat" else choice["text"]
        except (KeyError, IndexError, TypeError):
            return None
        return text if isinstance(text, str) else None

    def _resources(self) -> _LoopResources:
        loop = asyncio.get_running_loop()
        with self._lock:
            resources = self._loops.get(loop)
            if resources is None:
                resources = _LoopResources(self.config.concurrency)
                self._loops[loop] = resources
        return resources

    def _open(self, resources: _LoopResources) -> aiohttp.ClientSession:
        resources.users += 1
        if resources.client is None:
            resources.client = aiohttp.ClientSession(
                headers=self._headers,
                connector=aiohttp.TCPConnector(limit=self.config.concurrency),
                timeout=aiohttp.ClientTimeout(total=self.config.timeout_s),
                trust_env=False,  # a proxy from the environment must not carry notes elsewhere
            )
        return resources.client

    async def _release(self, resources: _LoopResources) -> None:
        resources.users -= 1
        if resources.users == 0 and resources.client is not None:
            client, resources.client = resources.client, None
            await client.close()

    def _backoff(self, attempt: int) -> float:
        base = min(self.config.backoff_s * (2 ** (attempt - 1)), _MAX_BACKOFF_S)
        return base / 2 + random.uniform(0, base / 2)

    async def _send(self, client, resources, method: str, path: str, deadline: float, counters, body, sent):
        """One HTTP attempt under the semaphore and the per-request timeout; the parsed JSON reply.

        `sent` collects the start time of each attempt, so latency excludes the wait for a free slot.
        """
        async with resources.semaphore:
            now = time.monotonic()
            remaining = deadline - now
            if remaining <= 0:
                raise _GiveUp("batch deadline reached")
            counters.requests += 1
            sent.append(now)
            try:
                status, retry_after, payload = await asyncio.wait_for(
                    self._exchange(client, method, path, body), timeout=min(self.config.timeout_s, remaining)
                )
            except TimeoutError:
                raise _Retry("timed out") from None
            except aiohttp.ClientError as exc:
                raise _Retry(f"connection failed ({type(exc).__name__})") from None
        if status == 429 or status == 408 or status >= 500:
            raise _Retry(f"HTTP {status}", retry_after_seconds(retry_after))
        if status >= 400:
            raise _GiveUp(f"HTTP {status}")
        try:
            return json.loads(payload)
        except ValueError:
            return None

    async def _exchange(self, client, method: str, path: str, body) -> tuple[int, str | None, bytes]:
        """Status, Retry-After header and body of one request (the body is read in full)."""
        async with client.request(method, f"{self.base_url}{path}", json=body) as response:
            return response.status, response.headers.get("Retry-After"), await response.read()

    async def _with_retries(self, client, resources, method, path, deadline, counters, body=None, sent=None):
        """`_send` until it works, retries run out or the deadline would pass; raises _GiveUp then."""
        attempt = 0
        sent = [] if sent is None else sent
        while True:
            try:
                return await self._send(client, resources, method, path, deadline, counters, body, sent)
            except _Retry as failure:
                counters.error(failure.reason)
                attempt += 1
                if attempt > self.config.retries:
                    raise _GiveUp(f"{failure.reason}, after {self.config.retries} retries") from None
                wait = failure.wait_s if failure.wait_s is not None else self._backoff(attempt)
                if time.monotonic() + wait >= deadline:
                    raise _GiveUp(f"{failure.reason}; no time left to retry within the batch deadline") from None
                counters.retried += 1
                await asyncio.sleep(wait)

    async def _resolve_model(self, client, resources, deadline, counters) -> str | None:
        """The configured model, or the first id the server lists under /models (asked once)."""
        if self.model:
            return self.model
        async with resources.model_lock:
            if self.model:
                return self.model
            try:
                data = await self._with_retries(client, resources, "GET", "/models", deadline, counters)
            except _GiveUp as failure:
                counters.error(f"listing models failed: {failure}")
                return None
            try:
                self.model = str(data["data"][0]["id"])  # type: ignore[index]
            except (KeyError, IndexError, TypeError):
                counters.error("the server's /models lists no model; set judge.model")
                return None
            log.info(
                "judge model not configured; using %r, the first model served at %s", self.model, redact(self.base_url)
            )
            return self.model

    async def _ask(self, client, resources, body: dict, deadline: float, counters: _BatchCounters) -> _Answer:
        sent: list[float] = []
        try:
            data = await self._with_retries(client, resources, "POST", self._path(), deadline, counters, body, sent)
        except _GiveUp as failure:
            counters.error(str(failure))
            return _Answer(None, "fallback")
        except Exception as exc:  # one odd reply must not lose the batch: that row falls back
            counters.error(f"unexpected {type(exc).__name__}")
            return _Answer(None, "fallback")
        # From the first attempt to the answer: retries and backoff count, queueing for a slot does not.
        latency = time.monotonic() - sent[0]
        score = judge_prompt.parse_score(self._reply_text(data, self.config.api))
        return _Answer(score, "ok" if score is not None else "unparsed", latency)

    def _path(self) -> str:
        return "/chat/completions" if self.config.api == "chat" else "/completions"

    async def rate_many(self, requests: Sequence[JudgeRequest]) -> list[JudgeVerdict]:
        """One verdict per request, in order, within `batch_deadline_s`; never raises for server trouble."""
        started = time.monotonic()
        counters = _BatchCounters()
        prompts = [self.prompt(request) for request in requests]
        # The deadline bounds waiting on the server; building prompts is local work (the first
        # call also loads the ICD-10-CM release) and must not eat into it.
        deadline = time.monotonic() + self.config.batch_deadline_s
        answers: list[_Answer | None] = [None] * len(prompts)
        resources = self._resources()
        client = self._open(resources)
        try:
            model = await self._resolve_model(client, resources, deadline, counters) if prompts else self.model
            if model is None:
                answers = [_Answer(None, "fallback") for _ in prompts]
            else:
                await self._answer(client, resources, model, prompts, answers, deadline, counters)
        finally:
            await self._release(resources)
        verdicts = [JudgeVerdict(a.score, a.status) if a else JudgeVerdict(None, "fallback") for a in answers]
        self._record(answers, verdicts, counters, time.monotonic() - started)
        return verdicts

    async def _answer(self, client, resources, model, prompts, answers, deadline, counters) -> None:
        keys = [cache_key(model, judge_prompt.VERSION, {"api": self.config.api, "prompt": p}) for p in prompts]
        cached: dict[str, int] = {}
        if self.cache is not None:
            try:
                cached = self.cache.get_many(keys)
            except Exception as exc:  # a locked or damaged cache costs requests, not the batch
                log.warning("could not read the judge cache %s: %s", self.cache.path, exc)
        # Identical prompts in one batch (GRPO repeats itself) cost one request.
        rows_by_key: dict[str, list[int]] = {}
        for index, key in enumerate(keys):
            if key in cached:
                answers[index] = _Answer(cached[key], "cached")
            else:
                rows_by_key.setdefault(key, []).append(index)
        tasks = {
            asyncio.ensure_future(
                self._ask(client, resources, self._body(prompts[rows[0]], model), deadline, counters)
            ): key
            for key, rows in rows_by_key.items()
        }
        fresh: dict[str, int] = {}
        try:
            if tasks:
                # Every attempt is already bounded by the deadline; the grace only covers scheduling.
                done, pending = await asyncio.wait(tasks, timeout=max(deadline - time.monotonic(), 0) + 1.0)
                for task in pending:
                    task.cancel()
                if pending:
                    counters.error("batch deadline reached")
                    await asyncio.gather(*pending, return_exceptions=True)
                for task in done:
                    answer = task.result()
                    key = tasks[task]
                    for index in rows_by_key[key]:
                        answers[index] = answer
                    if answer.status == "ok" and answer.score is not None:
                        fresh[key] = answer.score
        finally:
            for task in tasks:
                task.cancel()
            if fresh and self.cache is not None:
                try:
                    self.cache.put_many(fresh, model)
                except Exception as exc:  # a full disk must not cost the ratings themselves
                    log.warning(
                        "could not write %d judge ratings to the cache %s: %s", len(fresh), self.cache.path, exc
                    )

    def _record(self, answers, verdicts: list[JudgeVerdict], counters: _BatchCounters, elapsed: float) -> None:
        statuses = [verdict.status for verdict in verdicts]
        # One entry per request sent: rows sharing a prompt share one answer.
        distinct = {id(a): a for a in answers if a is not None}.values()
        latencies = [a.latency_s for a in distinct if a.latency_s is not None]
        stats = {
            "rows": float(len(verdicts)),
            "ok": float(statuses.count("ok")),
            "cached": float(statuses.count("cached")),
            "unparsed": float(statuses.count("unparsed")),
            "fallback": float(statuses.count("fallback")),
            "retried": float(counters.retried),
            "requests": float(counters.requests),
            "latency_p50_s": percentile(latencies, 0.50),
            "latency_p95_s": percentile(latencies, 0.95),
            "elapsed_s": float(elapsed),
        }
        with self._lock:
            self.last_batch_stats = stats
            for key in COUNT_KEYS:
                self.total_stats[key] += stats[key]
        if stats["fallback"]:
            log.warning(
                "judge at %s: %d of %d ratings fell back (%s)",
                redact(self.base_url),
                int(stats["fallback"]),
                len(verdicts),
                counters.first_error or "no answer",
            )
        log.debug("judge batch stats: %s", stats)


def build_judge(config: JudgeConfig) -> OpenAICompatibleJudge:
    """The judge a reward preset asks for; raises EndpointRefused for a URL off the user's machines."""
    return OpenAICompatibleJudge(config)
