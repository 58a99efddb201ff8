"""The LLM judge: asks an OpenAI-compatible server to rate each reasoning trace 1-5.

A GRPO step may need hundreds of ratings, and the judge server is shared, slow
at times and sometimes down. A reward that hangs or raises stops training, so
this client is built to always return one verdict per request, in bounded time:

* at most `concurrency` requests in flight per event loop;
* each attempt cut off after `timeout_s` and retried by the shared client
  (`deepicd.openai_client`: the openai SDK's retries on connection errors,
  timeouts, 408, 409, 429 and 5xx, waiting as long as `Retry-After` asks),
  and the whole batch cut off at `batch_deadline_s`;
* whatever still has no score then gets `JudgeVerdict(None, "fallback")`, and a
  reply the configured parser cannot read a score from gets
  `JudgeVerdict(None, "unparsed")`;
* ratings already paid for come from the on-disk cache (`judge_cache`), and
  identical prompts in a batch cost one request -- with greedy decoding only:
  a sampled rating (temperature > 0) is one draw, so every completion gets its
  own request and nothing is cached, as in the published judge.

The published judge talks to the completions endpoint and applies the judge
model's chat template itself; `judge.tokenizer` says whose template renders the
prompt for `api: completions` (none: a plain-text prompt).

MIMIC-IV notes must stay on the user's machines: the URL is checked with
`deepicd.endpoints.check_endpoint` when the judge is built, before any request.
The API key comes from the environment variable named in the config and is
never logged; neither are notes, prompts or server replies.

Training engines call from different event loops (VERL may use a fresh loop per
call, TRL its own thread's loop); the shared client keeps one HTTP client and
one concurrency limit per loop, open while a batch on that loop is running.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

from deepicd import guidelines, icd
from deepicd.errors import ConfigError
from deepicd.endpoints import redact
from deepicd.openai_client import CallStats, Endpoint, EndpointFailure
from deepicd.openai_client import retry_after_seconds as retry_after_seconds  # part of this module's interface
from deepicd.prompts import judge as judge_prompt
from deepicd.rewards.config import JudgeConfig
from deepicd.rewards.judge_cache import JudgeCache, cache_key
from deepicd.rewards.judging import JudgeRequest, JudgeVerdict

log = logging.getLogger(__name__)

# `judge.tokenizer` value: render with the tokenizer of the judge model itself (its name as served).
SAME_AS_MODEL = "same-as-model"
COUNT_KEYS = ("rows", "ok", "cached", "unparsed", "fallback", "retried", "requests")


@dataclass
class _Answer:
    """What one prompt ended with, and how long its requests took."""

    score: int | float | None
    status: str
    latency_s: float | None = None


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


def load_chat_template(source: str):
    """The tokenizer whose chat template renders completions prompts; ConfigError naming judge.tokenizer.

    Loaded once per process and source. A failure is remembered too: asking the
    Hugging Face hub again costs half a minute of retries on a machine without
    network, and every batch would pay it.
    """
    tokenizer, problem = _load_tokenizer(source)
    if problem:
        raise ConfigError(problem)
    return tokenizer


@lru_cache(maxsize=8)
def _load_tokenizer(source: str) -> tuple[object, str]:
    """(tokenizer, '') or (None, what went wrong)."""
    try:
        from transformers import AutoTokenizer
    except ImportError:
        return None, "judge.tokenizer needs the transformers package to apply a chat template"
    location = os.path.expanduser(source)
    try:
        tokenizer = AutoTokenizer.from_pretrained(location if os.path.exists(location) else source)
    except Exception as exc:  # hub errors, missing files, unreadable configs: all mean the same to the user
        return None, (
            f"judge.tokenizer: cannot load the tokenizer {source!r} for the judge's chat template "
            f"({type(exc).__name__}: {exc}); set judge.tokenizer to a local folder or Hugging Face id"
        )
    if not getattr(tokenizer, "chat_template", None):
        return None, f"judge.tokenizer: the tokenizer {source!r} has no chat template"
    return tokenizer, ""


def render_chat(source: str, chat: list[dict[str, str]]) -> str:
    """Messages through a tokenizer's chat template, ending with the assistant's turn, as text.

    Some templates refuse a system message or other roles; that is a setting
    to fix, so it becomes a ConfigError like a tokenizer that cannot be loaded.
    """
    tokenizer = load_chat_template(source)
    try:
        return tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True, enable_thinking=False)
    except Exception as exc:  # jinja errors raised by the template itself
        raise ConfigError(
            f"judge.tokenizer: the chat template of {source!r} cannot render the judge's messages "
            f"({type(exc).__name__}: {exc})"
        ) from None


class OpenAICompatibleJudge:
    """A `Judge` backed by any OpenAI-compatible server (vllm serve, transformers serve, a gateway)."""

    def __init__(self, config: JudgeConfig, cache: JudgeCache | None = None) -> None:
        self.config = config  # checked when it was built (JudgeConfig.__post_init__)
        # Refuses external hosts before anything is sent (EndpointRefused).
        self.endpoint = Endpoint(config)
        self.base_url = self.endpoint.url
        self.model = config.model
        # Greedy ratings are reproducible, so repeats may share one; sampled ones may not.
        self.reuses_ratings = config.temperature <= 0
        if self.reuses_ratings and cache is None and config.cache_dir:
            cache = JudgeCache(config.cache_dir)
        if not self.reuses_ratings and (cache is not None or config.cache_dir):
            log.warning("judge.cache_dir is not used while judge.temperature > 0: every sampled rating is asked anew")
            cache = None
        self.cache = cache
        self._parse = judge_prompt.PARSERS[config.score_parser]
        self._rubric = judge_prompt.rubric(config.rubric)
        self._preload_chat_template()
        if config.api_key_env and not os.environ.get(config.api_key_env):
            log.warning("judge.api_key_env names %s, which is not set: sending no API key", config.api_key_env)
        self._guideline_dir = str(Path(config.guidelines_dir).expanduser()) if config.guidelines_dir else None
        self._guideline_by_chapter: dict[int, str] = {}
        # For run manifests: 'files:<folder>' or 'tabular-fallback'.
        self.guidelines_source = guidelines.source(self._guideline_dir)
        if self.guidelines_source == guidelines.TABULAR_FALLBACK:
            log.warning(
                "judge.guidelines_dir is not set: the judge sees the ICD-10-CM tabular chapter notes instead of "
                "the chapter coding guidelines the paper passed; point judge.guidelines_dir at a folder of "
                "chapter_<n>.json files (see docs/judge.md)"
            )
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

    def _template_source(self, model: str | None) -> str | None:
        """The tokenizer that renders completions prompts, None for a plain-text prompt or the chat API."""
        if self.config.api != "completions" or not self.config.tokenizer:
            return None
        if self.config.tokenizer == SAME_AS_MODEL:
            return model or None
        return self.config.tokenizer

    def _preload_chat_template(self) -> None:
        """Load the chat template now when its source is known, so a bad `judge.tokenizer` fails at start.

        With `same-as-model` and no `judge.model`, the name is only known once
        the server has listed its model; the first batch loads it then.
        """
        source = self._template_source(self.model)
        if source is not None:
            load_chat_template(source)

    def messages(self, request: JudgeRequest) -> list[dict[str, str]]:
        """The chat messages of a request, in the configured rubric."""
        return judge_prompt.messages(
            request.note,
            request.prediction,
            request.trace,
            _code_text(request.prediction),
            self.guideline(request.prediction),
            self._rubric.name,
        )

    def render(self, chat: list[dict[str, str]], model: str | None = None) -> list[dict[str, str]] | str:
        """What is sent for these messages: the messages themselves (chat API) or one prompt text."""
        if self.config.api == "chat":
            return chat
        source = self._template_source(model or self.model)
        if source is None:
            if self.config.tokenizer == SAME_AS_MODEL:
                raise ConfigError("judge.tokenizer=same-as-model needs the judge model's name; none is known yet")
            return judge_prompt.plain_prompt(chat)
        return render_chat(source, chat)

    def prompt(self, request: JudgeRequest) -> list[dict[str, str]] | str:
        """The exact prompt sent for a request: chat messages, or one text for the completions API."""
        return self.render(self.messages(request))

    def _arguments(self, prompt: list[dict[str, str]] | str, model: str) -> dict:
        """The SDK arguments of one rating request; `extra_body` adds the server-specific fields."""
        arguments = {
            "model": model,
            "temperature": self.config.temperature,
            "top_p": self.config.top_p,
            "max_tokens": self.config.max_tokens,
            "extra_body": dict(self.config.extra_body) or None,
        }
        arguments["messages" if self.config.api == "chat" else "prompt"] = prompt
        return arguments

    @staticmethod
    def _reply_text(data: object, api: str) -> str | None:
        try:
            choice = data["choices"][0]  # type: ignore[index]
            text = choice["message"]["content"] if api == "chat" else choice["text"]
        except (KeyError, IndexError, TypeError):
            return None
        return text if isinstance(text, str) else None

    @staticmethod
    def _json(raw) -> object:
        """The reply's JSON as sent; None when it is not JSON (read as an unparsed rating, not a failure)."""
        try:
            return json.loads(raw.http_response.content)
        except ValueError:
            return None

    async def _resolve_model(self, share, deadline: float, stats: CallStats) -> str | None:
        """The configured model, or the first id the server lists under /models (asked once per judge)."""
        if self.model:
            return self.model
        async with share.lock:
            if self.model:
                return self.model
            try:
                raw = await self.endpoint.call(lambda client: client.models.with_raw_response.list(),
                                               deadline=deadline, stats=stats)
            except EndpointFailure:  # the client recorded why in `stats`
                return None
            try:
                self.model = str(self._json(raw)["data"][0]["id"])  # type: ignore[index]
            except (KeyError, IndexError, TypeError):
                stats.error("the server's /models lists no model; set judge.model")
                return None
            log.info(
                "judge model not configured; using %r, the first model served at %s", self.model, redact(self.base_url)
            )
            return self.model

    async def _ask(self, arguments: dict, deadline: float, stats: CallStats) -> _Answer:
        """One rating: the shared client's retries within the batch deadline; a failure falls back."""
        started = None

        async def timed(client):
            nonlocal started
            # From the first attempt to the answer: retries and backoff count, queueing for a slot does not.
            started = time.monotonic()
            api = client.chat.completions if self.config.api == "chat" else client.completions
            return await api.with_raw_response.create(**arguments)

        try:
            raw = await self.endpoint.call(timed, deadline=deadline, stats=stats)
        except EndpointFailure:  # the client recorded why in `stats`
            return _Answer(None, "fallback")
        except Exception as exc:  # one odd reply must not lose the batch: that row falls back
            stats.error(f"unexpected {type(exc).__name__}")
            return _Answer(None, "fallback")
        score = self._parse(self._reply_text(self._json(raw), self.config.api))
        return _Answer(score, "ok" if score is not None else "unparsed", time.monotonic() - started)

    async def rate_many(self, requests: Sequence[JudgeRequest]) -> list[JudgeVerdict]:
        """One verdict per request, in order, within `batch_deadline_s`; never raises for server trouble."""
        started = time.monotonic()
        stats = CallStats()
        chats = [self.messages(request) for request in requests]
        # The deadline bounds waiting on the server; building prompts is local work (the first
        # call also loads the ICD-10-CM release) and must not eat into it.
        deadline = time.monotonic() + self.config.batch_deadline_s
        answers: list[_Answer | None] = [None] * len(chats)
        async with self.endpoint.session() as share:
            model = await self._resolve_model(share, deadline, stats) if chats else self.model
            prompts = self._render_all(chats, model, stats) if model is not None else None
            if prompts is None:
                answers = [_Answer(None, "fallback") for _ in chats]
            else:
                await self._answer(model, prompts, answers, deadline, stats)
        verdicts = [JudgeVerdict(a.score, a.status) if a else JudgeVerdict(None, "fallback") for a in answers]
        self._record(answers, verdicts, stats, time.monotonic() - started)
        return verdicts

    def _render_all(self, chats, model: str, stats: CallStats) -> list | None:
        """Every prompt of a batch, or None (the batch falls back) when the chat template cannot be loaded."""
        try:
            return [self.render(chat, model) for chat in chats]
        except ConfigError as exc:
            stats.error(str(exc))
            return None

    def _cache_key(self, model: str, prompt) -> str:
        payload = {"api": self.config.api, "prompt": prompt}
        if self.config.score_parser != "lenient":  # keys of the lenient parser stay those of earlier releases
            payload["score_parser"] = self.config.score_parser
        return cache_key(model, self._rubric.version, payload)

    def _cached(self, keys: list[str]) -> dict[str, int | float]:
        if self.cache is None:
            return {}
        try:
            return self.cache.get_many(keys)
        except Exception as exc:  # a locked or damaged cache costs requests, not the batch
            log.warning("could not read the judge cache %s: %s", self.cache.path, exc)
            return {}

    def _groups(self, keys: list[str], answers, cached: dict[str, int | float]) -> list[list[int]]:
        """Rows that share one request: identical prompts with greedy decoding, else one row per request."""
        if not self.reuses_ratings:
            return [[index] for index in range(len(keys))]
        rows_by_key: dict[str, list[int]] = {}
        for index, key in enumerate(keys):
            if key in cached:
                answers[index] = _Answer(cached[key], "cached")
            else:
                rows_by_key.setdefault(key, []).append(index)
        return list(rows_by_key.values())

    async def _answer(self, model, prompts, answers, deadline, stats: CallStats) -> None:
        keys = [self._cache_key(model, prompt) for prompt in prompts]
        # Identical prompts in one batch (GRPO repeats itself) cost one request when decoding is greedy.
        groups = self._groups(keys, answers, self._cached(keys) if self.reuses_ratings else {})
        tasks = {
            asyncio.ensure_future(self._ask(self._arguments(prompts[rows[0]], model), deadline, stats)): rows
            for rows in groups
        }
        fresh: dict[str, int | float] = {}
        try:
            if tasks:
                # Every attempt is already bounded by the deadline; the grace only covers scheduling.
                done, pending = await asyncio.wait(tasks, timeout=max(deadline - time.monotonic(), 0) + 1.0)
                for task in pending:
                    task.cancel()
                if pending:
                    stats.error("batch deadline reached")
                    await asyncio.gather(*pending, return_exceptions=True)
                for task in done:
                    answer = task.result()
                    rows = tasks[task]
                    for index in rows:
                        answers[index] = answer
                    if answer.status == "ok" and answer.score is not None:
                        fresh[keys[rows[0]]] = answer.score
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

    def _record(self, answers, verdicts: list[JudgeVerdict], calls: CallStats, elapsed: float) -> None:
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
            "retried": float(calls.retried),
            "requests": float(calls.attempts),
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
                calls.first_error or "no answer",
            )
        log.debug("judge batch stats: %s", stats)


def build_judge(config: JudgeConfig) -> OpenAICompatibleJudge:
    """The judge a reward preset asks for; raises EndpointRefused for a URL off the user's machines."""
    return OpenAICompatibleJudge(config)
