"""Generation with plain transformers: the backend that runs anywhere, CPU included.

Two paths share one prompt rendering and one decoding rule:

- Static batches (the default, and the only sensible one on a CPU). Prompts are
  sorted longest first, so each batch holds prompts of similar length (little
  padding) and an out-of-memory error shows up in the first batch rather than
  after an hour. Prompts are padded on the left, so every row's continuation
  starts at the same column. Each batch reseeds from `seed + batch index`
  inside a forked RNG: a run is repeatable and the caller's RNG is untouched.
  A batch that runs out of GPU memory is split in half and retried.
- Continuous batching (transformers' paged-attention scheduler), on by default
  on a GPU: finished sequences leave the batch at once and waiting prompts take
  their slot, so one long reasoning trace no longer holds a whole batch back.
  Its sampling runs in a background thread, out of reach of a forked RNG, so it
  seeds torch's global generator once per call instead.

Sampling is exactly `SamplingConfig`: the model's own generation defaults
(top_k, repetition penalty, ...) are overridden, so this backend samples the
same distribution as vLLM with the same settings.
"""

from __future__ import annotations

from typing import Iterable, Iterator

from deepicd.errors import UserError
from deepicd.generate import sampling as rules
from deepicd.generate.base import GenerationRequest, GenerationResult, SamplingConfig
from deepicd.generate.config import GeneratorConfig, require_model
from deepicd.generate.render import prompt_ids, stop_token_ids

_CHILD = "__child#"  # how continuous batching names the extra sequences of a request with n > 1


class TransformersGenerator:
    """Batched `model.generate` (or continuous batching) on one device."""

    def __init__(self, config: GeneratorConfig, *, model=None, tokenizer=None):
        require_model(config)
        self.config = config
        if model is None or tokenizer is None:
            from deepicd.models import load

            model, tokenizer = load(config.model, purpose="generate", dtype=config.dtype, device=config.device)
        tokenizer.padding_side = "left"
        self.model = model
        self.tokenizer = tokenizer
        self.stop_ids = stop_token_ids(tokenizer, model.generation_config.eos_token_id)
        if not self.stop_ids:
            raise UserError(
                f"model {config.model!r}: neither its tokenizer nor its generation config names an end token"
            )
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else self.stop_ids[0]
        self.continuous = self._use_continuous_batching(config.continuous_batching)

    def _use_continuous_batching(self, setting: str) -> bool:
        available = hasattr(self.model, "continuous_batching_context_manager")
        if setting == "on" and not available:
            raise UserError("continuous_batching=on, but the installed transformers has no continuous batching")
        if setting == "auto":
            return available and self.model.device.type == "cuda"
        return setting == "on"

    def generation_config(self, sampling: SamplingConfig):
        """The full GenerationConfig for these settings, neutralising the model's sampling defaults."""
        from transformers import GenerationConfig

        return GenerationConfig(
            **rules.transformers_settings(sampling),
            max_new_tokens=sampling.max_new_tokens,
            num_return_sequences=rules.draws(sampling),
            eos_token_id=self.stop_ids,
            pad_token_id=self.pad_id,
        )

    def generate(self, requests: Iterable[GenerationRequest], sampling: SamplingConfig) -> Iterator[GenerationResult]:
        requests = list(requests)
        if not requests:
            return
        encoded = [prompt_ids(self.tokenizer, request) for request in requests]
        if self.continuous:
            yield from self._continuous(requests, encoded, sampling)
        else:
            yield from self._batched(requests, encoded, sampling)

    def close(self) -> None:
        import gc

        self.model = None
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass

    # -- static batches -------------------------------------------------------------------------------

    def _batched(self, requests, encoded, sampling: SamplingConfig) -> Iterator[GenerationResult]:
        from tqdm import tqdm

        order = sorted(range(len(requests)), key=lambda i: len(encoded[i]), reverse=True)
        size = self.config.batch_size
        generation_config = self.generation_config(sampling)
        with tqdm(total=len(requests), desc="generating", unit="prompt", disable=not self.config.progress) as bar:
            for number, start in enumerate(range(0, len(order), size)):
                batch = order[start : start + size]
                for index, outcome in self._run_batch(batch, encoded, generation_config, sampling.seed + number):
                    yield self._result(requests[index], len(encoded[index]), outcome, sampling.n)
                    bar.update(1)

    def _run_batch(self, batch: list[int], encoded, generation_config, seed: int):
        """(index, sequences or error message) for every prompt of the batch; halves it on out-of-memory."""
        import torch

        try:
            sequences = self._generate_padded([encoded[i] for i in batch], generation_config, seed)
        except torch.OutOfMemoryError as exc:
            torch.cuda.empty_cache()
            if len(batch) == 1:
                return [(batch[0], f"out of memory generating this prompt: {exc}")]
            half = len(batch) // 2
            return self._run_batch(batch[:half], encoded, generation_config, seed) + self._run_batch(
                batch[half:], encoded, generation_config, seed
            )
        per_prompt = generation_config.num_return_sequences
        return [(index, sequences[j * per_prompt : (j + 1) * per_prompt]) for j, index in enumerate(batch)]

    def _generate_padded(self, prompts: list[list[int]], generation_config, seed: int) -> list[list[int]]:
        import torch

        padded = self.tokenizer.pad({"input_ids": prompts}, padding=True, return_tensors="pt")
        device = self.model.device
        input_ids = padded["input_ids"].to(device)
        attention_mask = padded["attention_mask"].to(device)
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.inference_mode():
            torch.manual_seed(seed)
            output = self.model.generate(
                input_ids=input_ids, attention_mask=attention_mask, generation_config=generation_config
            )
        return output[:, input_ids.shape[1] :].tolist()

    # -- continuous batching --------------------------------------------------------------------------

    def _continuous(self, requests, encoded, sampling: SamplingConfig) -> Iterator[GenerationResult]:
        import torch
        from tqdm import tqdm

        generation_config = self.generation_config(sampling)
        generation_config.use_cache = False  # the scheduler keeps its own paged cache
        expected = generation_config.num_return_sequences
        collected: dict[int, dict[int, list[int]]] = {i: {} for i in range(len(requests))}
        errors: dict[int, str] = {}
        torch.manual_seed(sampling.seed)
        bar = tqdm(total=len(requests), desc="generating", unit="prompt", disable=not self.config.progress)
        manager_context = self.model.continuous_batching_context_manager(
            generation_config=generation_config, block=True, timeout=10, warmup=self.model.device.type == "cuda"
        )
        with bar, manager_context as manager:
            for index, ids in enumerate(encoded):
                manager.add_request(ids, request_id=f"r{index}", max_new_tokens=sampling.max_new_tokens)
            while collected:
                output = manager.get_result(timeout=1)
                if output is None:
                    if not manager.is_running():
                        break
                    continue
                if not output.is_finished():
                    continue
                index, child = _parse_request_id(output.request_id)
                if index not in collected:
                    continue
                if output.error:
                    errors[index] = output.error
                collected[index][child] = list(output.generated_tokens)
                if len(collected[index]) == expected or index in errors:
                    group = collected.pop(index)
                    sequences = [group[c] for c in sorted(group)]
                    outcome = errors[index] if index in errors else sequences
                    yield self._result(requests[index], len(encoded[index]), outcome, sampling.n)
                    bar.update(1)
        for index in sorted(collected):
            yield rules.failed(requests[index], "the continuous batching loop stopped before this request finished")

    # -- decoding -------------------------------------------------------------------------------------

    def _result(self, request: GenerationRequest, prompt_tokens: int, outcome, n: int) -> GenerationResult:
        if isinstance(outcome, str):
            return rules.failed(request, outcome)
        texts, counts = [], []
        for tokens in outcome:
            text, count = self.decode(tokens)
            texts.append(text)
            counts.append(count)
        texts, counts = rules.widen(texts, counts, n)
        return GenerationResult(
            key=request.key, completions=texts, prompt_tokens=prompt_tokens, completion_tokens=counts
        )

    def decode(self, tokens: list[int]) -> tuple[str, int]:
        """The text before the first end token, and the number of tokens generated (the end token included)."""
        stops = set(self.stop_ids)
        end = next((position for position, token in enumerate(tokens) if token in stops), None)
        kept = tokens if end is None else tokens[:end]
        text = self.tokenizer.decode(kept, skip_special_tokens=True)
        return text, len(tokens) if end is None else end + 1


def _parse_request_id(request_id: str) -> tuple[int, int]:
    """`r12` -> (12, 0); `r12__child#0` -> (12, 1): the prompt index and the sequence number within it."""
    parent, _, child = request_id.partition(_CHILD)
    return int(parent[1:]), (int(child) + 1) if child else 0
