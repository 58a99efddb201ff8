"""Generation through an OpenAI-compatible server on the user's own machines (vllm serve, transformers serve).

A server keeps the model loaded between stages and batches requests from many
clients; this client only has to keep enough requests in flight. It runs an
asyncio loop in a helper thread (so it also works where the caller already runs
one, as in a notebook) with at most `concurrency` requests open, and hands
results back as they complete. Requests go through the shared client
(`deepicd.openai_client`): the openai SDK's retries with our pace, the MIMIC
endpoint policy checked before anything is sent, no proxies. A request that
still fails comes back with `error` set instead of stopping the run, so one
stuck prompt cannot cost the other ten thousand.

Prefill, i.e. continuing an assistant turn that already starts with `<think>`:
- api="completions" renders `chat_template + prefill` locally with the model's
  tokenizer and sends the text; every server supports this.
- api="chat" sends the prefill as a final assistant message with vLLM's
  `continue_final_message` extension; `transformers serve` rejects those fields.
Server dialects (`server`): vLLM takes `n`, and takes top_k, min_p and
repetition_penalty as extra request fields; `transformers serve` ignores `n`
(we send n requests with seeds seed..seed+n-1), rejects those extra fields, and
samples only when told through its `generation_config` field, which we always
send. Either way every filter is stated on every request, "off" included: a
server fills what it is not told from the model's generation_config.json
(`vllm serve` of Qwen2.5-Instruct would add top_k 20 and repetition_penalty
1.05), and would sample another distribution than the one configured.
"""

from __future__ import annotations

import asyncio
import json
import queue
import threading
from pathlib import Path
from typing import Iterable, Iterator

from deepicd.errors import UserError
from deepicd.endpoints import EndpointRefused
from deepicd.generate import sampling as rules
from deepicd.generate.base import GenerationRequest, GenerationResult, SamplingConfig
from deepicd.generate.config import GeneratorConfig, require_model
from deepicd.generate.render import server_prompt_text
from deepicd.openai_client import Endpoint, EndpointFailure


class _GiveUp(Exception):
    """A request that cannot be completed: the server answered with no completions."""


class OpenAIGenerator:
    """Client for an OpenAI-compatible `/v1/completions` or `/v1/chat/completions` endpoint."""

    def __init__(self, config: GeneratorConfig, *, tokenizer=None):
        require_model(config)
        try:
            self.endpoint = Endpoint(config)
        except EndpointRefused as exc:
            raise UserError(str(exc)) from exc
        self.url = self.endpoint.url
        self.config = config
        self.tokenizer = tokenizer if tokenizer is not None else self._load_tokenizer(config)

    @staticmethod
    def _load_tokenizer(config: GeneratorConfig):
        """The tokenizer that renders prompts (completions API) or counts tokens (chat API, if at hand)."""
        from deepicd.models import load_tokenizer

        path = config.tokenizer_path or (config.model if Path(config.model).expanduser().is_dir() else "")
        if not path:
            if config.api == "completions":
                raise UserError(
                    f"api=completions renders prompts locally, but model {config.model!r} is not a local folder: "
                    "set tokenizer_path to the served model's folder (or a local copy of its tokenizer)"
                )
            return None
        return load_tokenizer(path, purpose="generate")

    def close(self) -> None:
        """Nothing to release: each `generate` call opens and closes its own connections."""

    def generate(self, requests: Iterable[GenerationRequest], sampling: SamplingConfig) -> Iterator[GenerationResult]:
        from tqdm import tqdm

        requests = list(requests)
        if not requests:
            return
        if self.config.api == "chat" and self.config.server == "transformers" and any(r.prefill for r in requests):
            raise UserError(
                "transformers serve cannot continue a prefilled assistant turn in chat mode "
                "(it rejects continue_final_message); use api=completions with it"
            )
        prompts = [self._prompt(request) for request in requests]
        outbox: queue.Queue = queue.Queue()
        loop = asyncio.new_event_loop()
        main = loop.create_task(self._run(requests, prompts, sampling, outbox.put))
        worker = threading.Thread(target=_drive, args=(loop, main, outbox), name="deepicd-openai-client", daemon=True)
        worker.start()
        try:
            with tqdm(total=len(requests), desc="generating", unit="prompt", disable=not self.config.progress) as bar:
                for _ in range(len(requests)):
                    item = outbox.get()
                    if isinstance(item, BaseException):
                        raise item
                    bar.update(1)
                    yield item
        finally:
            if not main.done():  # the caller stopped early: cancel what is still in flight
                try:
                    loop.call_soon_threadsafe(main.cancel)
                except RuntimeError:  # the loop closed in the meantime; nothing is left to cancel
                    pass
            worker.join()

    # -- one request ----------------------------------------------------------------------------------

    def _prompt(self, request: GenerationRequest):
        """What is sent for a request: the rendered text (completions) or the messages (chat)."""
        if self.config.api == "completions":
            return server_prompt_text(self.tokenizer, request)
        messages = [dict(message) for message in request.messages]
        if request.prefill:
            messages.append({"role": "assistant", "content": request.prefill})
        return messages

    async def _run(self, requests, prompts, sampling: SamplingConfig, emit) -> None:
        async def one(request: GenerationRequest, prompt) -> None:
            emit(await self._complete(request, prompt, sampling))

        async with self.endpoint.session():  # one HTTP client for the whole batch
            await asyncio.gather(*(one(request, prompt) for request, prompt in zip(requests, prompts)))

    async def _complete(self, request: GenerationRequest, prompt, sampling: SamplingConfig) -> GenerationResult:
        """All `n` completions of one request, or a result with `error` set."""
        wanted = rules.draws(sampling)
        # vLLM draws n samples in one call; transformers serve ignores n, so it gets n calls with distinct seeds.
        asks = [wanted] if self.config.server == "vllm" else [1] * wanted
        texts: list[str] = []
        counts: list[int | None] = []
        prompt_tokens = 0
        try:
            while len(texts) < wanted:
                offsets = [len(texts) + sum(asks[:i]) for i in range(len(asks))]
                calls = [
                    self._ask(prompt, sampling, ask, sampling.seed + offset)
                    for ask, offset in zip(asks, offsets)
                ]
                answers = await asyncio.gather(*calls, return_exceptions=True)
                failure = next((a for a in answers if isinstance(a, BaseException)), None)
                if failure is not None:
                    raise failure
                got = 0
                for batch_texts, batch_counts, used_prompt in answers:
                    texts.extend(batch_texts)
                    counts.extend(batch_counts)
                    prompt_tokens = prompt_tokens or used_prompt
                    got += len(batch_texts)
                if got == 0:
                    raise _GiveUp("the server answered with no completions")
                # A server that returned fewer than asked (it ignored `n`): ask again, one at a time.
                asks = [1] * (wanted - len(texts))
        except (_GiveUp, EndpointFailure) as exc:
            return rules.failed(request, str(exc))
        except Exception as exc:  # never let one malformed answer end the run
            return rules.failed(request, f"{type(exc).__name__}: {exc}")
        texts = texts[:wanted]
        known = [c for c in counts[:wanted] if c is not None]
        texts, known = rules.widen(texts, known if len(known) == len(texts) else [], sampling.n)
        return GenerationResult(
            key=request.key, completions=texts, prompt_tokens=prompt_tokens, completion_tokens=known
        )

    async def _ask(self, prompt, sampling: SamplingConfig, n: int, seed: int):
        """One request for `n` completions through the shared client; EndpointFailure when it fails for good."""
        response = await self.endpoint.call(lambda client: self._call(client, prompt, sampling, n, seed))
        return self._parse(response)

    async def _call(self, client, prompt, sampling: SamplingConfig, n: int, seed: int):
        chosen = rules.filters(sampling)
        arguments = {
            "model": self.config.model,
            "max_tokens": sampling.max_new_tokens,
            "temperature": chosen["temperature"],
            "top_p": chosen["top_p"],
            "seed": seed,
        }
        extra = self._dialect_fields(sampling)
        if self.config.server == "vllm":
            arguments["n"] = n
        if self.config.api == "completions":
            return await client.completions.create(prompt=prompt, extra_body=extra or None, **arguments)
        if prompt and prompt[-1]["role"] == "assistant":
            extra.update({"continue_final_message": True, "add_generation_prompt": False})
        return await client.chat.completions.create(messages=prompt, extra_body=extra or None, **arguments)

    def _dialect_fields(self, sampling: SamplingConfig) -> dict:
        """The request fields beyond OpenAI's that pin the remaining filters, in the server's own dialect."""
        if self.config.server == "vllm":
            chosen = rules.filters(sampling)
            return {
                "top_k": -1 if chosen["top_k"] is None else chosen["top_k"],  # -1: off, in every vLLM release
                "min_p": chosen["min_p"],
                "repetition_penalty": chosen["repetition_penalty"],
            }
        # transformers serve rejects those fields, builds its GenerationConfig from this one, and samples
        # only if it says so.
        return {"generation_config": json.dumps(rules.transformers_settings(sampling))}

    def _parse(self, response) -> tuple[list[str], list[int | None], int]:
        """Texts in choice order, per-choice token counts where known, and the prompt's token count."""
        choices = sorted(response.choices, key=lambda choice: choice.index)
        if self.config.api == "completions":
            texts = [choice.text or "" for choice in choices]
        else:
            texts = [choice.message.content or "" for choice in choices]
        usage = response.usage
        if usage is not None and len(texts) == 1:
            counts: list[int | None] = [usage.completion_tokens]
        elif self.tokenizer is not None:
            counts = [len(self.tokenizer(text, add_special_tokens=False)["input_ids"]) for text in texts]
        else:
            counts = [None] * len(texts)
        return texts, counts, (usage.prompt_tokens if usage is not None else 0)


def _drive(loop: asyncio.AbstractEventLoop, main: asyncio.Task, outbox: queue.Queue) -> None:
    """Thread body: run the client loop to the end; a crash of the loop itself reaches the caller."""
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(main)
    except asyncio.CancelledError:
        pass
    except BaseException as exc:  # handed to the consumer, which re-raises it in its own thread
        outbox.put(exc)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

