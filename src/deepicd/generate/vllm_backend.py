"""Offline generation with vLLM on the GPUs of this node: the fast path for distillation and evaluation.

Tensor parallelism splits one model over `tensor_parallel_size` GPUs inside one
engine. Data parallelism runs `data_parallel_size` independent engines, each in
its own process pinned (through CUDA_VISIBLE_DEVICES) to its own group of GPUs;
they pull chunks of prompts from one shared queue, so a replica that drew short
notes simply takes more chunks. Independent replicas need none of vLLM's
cross-replica coordination, which only mixture-of-experts models benefit from.

Prompts are rendered here, with the same code as every other backend, and handed
to vLLM as token ids, so vLLM adds no second BOS and applies no template of its
own. Work is cut into chunks of `chunk_size` prompts: results come back, and
can be saved, one chunk at a time.

vLLM is an optional dependency (`deepicd[gpu]`) imported only when this backend
is built; everything else here is plain Python that the CPU test suite checks.
"""

from __future__ import annotations

import gc
import os
import queue
from typing import Iterable, Iterator

from deepicd.commands import UserError
from deepicd.generate import sampling as rules
from deepicd.generate.base import GenerationRequest, GenerationResult, SamplingConfig
from deepicd.generate.config import GeneratorConfig, validate
from deepicd.generate.render import prompt_ids, stop_token_ids

_POLL_S = 5.0  # how often the parent checks that its replicas are still alive


def import_vllm():
    """The vllm module, or a UserError saying how to get it."""
    try:
        import vllm
    except ImportError as exc:
        raise UserError(
            "the vllm backend needs vLLM, which is not installed here: on a CUDA machine run "
            "`pip install 'deepicd[gpu]'`, or use backend=transformers or backend=openai"
        ) from exc
    return vllm


def engine_kwargs(config: GeneratorConfig) -> dict:
    """Arguments of `vllm.LLM` for one engine (one data-parallel replica)."""
    kwargs = {
        "model": config.model,
        "tokenizer": config.tokenizer_path or config.model,
        "tensor_parallel_size": config.tensor_parallel_size,
        "gpu_memory_utilization": config.gpu_memory_utilization,
        "dtype": config.dtype,
        "trust_remote_code": False,
    }
    if config.max_model_len is not None:
        kwargs["max_model_len"] = config.max_model_len
    return kwargs


def sampling_params_kwargs(sampling: SamplingConfig, stop_ids: list[int]) -> dict:
    """Arguments of `vllm.SamplingParams`: greedy decodes once (widened to n later), sampling draws n."""
    greedy = rules.is_greedy(sampling)
    return {
        "n": rules.draws(sampling),
        "temperature": 0.0 if greedy else sampling.temperature,
        "top_p": 1.0 if greedy else sampling.top_p,
        "max_tokens": sampling.max_new_tokens,
        "seed": sampling.seed,
        "stop_token_ids": list(stop_ids),
        "skip_special_tokens": True,
    }


def gpu_groups(visible: list[str], tensor_parallel_size: int, data_parallel_size: int) -> list[str]:
    """CUDA_VISIBLE_DEVICES values, one per replica: consecutive groups of `tensor_parallel_size` GPUs."""
    needed = tensor_parallel_size * data_parallel_size
    if len(visible) < needed:
        raise UserError(
            f"data_parallel_size={data_parallel_size} x tensor_parallel_size={tensor_parallel_size} needs {needed} "
            f"GPUs, but {len(visible)} are visible"
        )
    return [
        ",".join(visible[rank * tensor_parallel_size : (rank + 1) * tensor_parallel_size])
        for rank in range(data_parallel_size)
    ]


def visible_gpus() -> list[str]:
    """The GPU ids this process may use, honouring an existing CUDA_VISIBLE_DEVICES."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [gpu.strip() for gpu in listed.split(",") if gpu.strip()]
    import torch

    return [str(index) for index in range(torch.cuda.device_count())]


def run_chunk(llm, vllm, prompts: list[list[int]], params: dict) -> list[tuple[list[str], list[int], int]]:
    """(texts, token counts, prompt length) per prompt, in prompt order."""
    outputs = llm.generate(
        [{"prompt_token_ids": ids} for ids in prompts], vllm.SamplingParams(**params), use_tqdm=False
    )
    summary = []
    for output in outputs:
        samples = sorted(output.outputs, key=lambda sample: sample.index)
        summary.append(([s.text for s in samples], [len(s.token_ids) for s in samples], len(output.prompt_token_ids)))
    return summary


def _replica(gpus: str, engine: dict, tasks, results) -> None:
    """Body of one data-parallel process: load an engine on `gpus`, then serve chunks until told to stop."""
    os.environ["CUDA_VISIBLE_DEVICES"] = gpus
    vllm = import_vllm()
    llm = vllm.LLM(**engine)
    while True:
        task = tasks.get()
        if task is None:
            return
        chunk, prompts, params = task
        try:
            results.put((chunk, run_chunk(llm, vllm, prompts, params)))
        except Exception as exc:  # reported per chunk; the replica keeps serving
            results.put((chunk, f"{type(exc).__name__}: {exc}"))


class VLLMGenerator:
    """`vllm.LLM` in this process (data_parallel_size=1) or in one process per replica."""

    def __init__(self, config: GeneratorConfig, *, tokenizer=None):
        validate(config)
        self.config = config
        self._vllm = import_vllm()
        if tokenizer is None:
            from deepicd.models import load_tokenizer

            tokenizer = load_tokenizer(config.tokenizer_path or config.model, purpose="generate")
        self.tokenizer = tokenizer
        self.stop_ids = stop_token_ids(tokenizer)
        self._llm = None
        self._workers: list = []
        engine = engine_kwargs(config)
        if config.data_parallel_size == 1:
            self._llm = self._vllm.LLM(**engine)
        else:
            self._start_replicas(engine)

    def _start_replicas(self, engine: dict) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")  # CUDA cannot be forked
        self._tasks = context.Queue()
        self._results = context.Queue()
        groups = gpu_groups(visible_gpus(), self.config.tensor_parallel_size, self.config.data_parallel_size)
        for gpus in groups:
            worker = context.Process(target=_replica, args=(gpus, engine, self._tasks, self._results), daemon=True)
            worker.start()
            self._workers.append(worker)

    def generate(self, requests: Iterable[GenerationRequest], sampling: SamplingConfig) -> Iterator[GenerationResult]:
        from tqdm import tqdm

        rules.validate(sampling)
        requests = list(requests)
        if not requests:
            return
        prompts = [prompt_ids(self.tokenizer, request) for request in requests]
        params = sampling_params_kwargs(sampling, self.stop_ids)
        size = self.config.chunk_size
        chunks = [list(range(start, min(start + size, len(requests)))) for start in range(0, len(requests), size)]
        with tqdm(total=len(requests), desc="generating", unit="prompt", disable=not self.config.progress) as bar:
            for chunk, outcome in self._outcomes(chunks, prompts, params):
                for position, index in enumerate(chunks[chunk]):
                    yield self._result(requests[index], outcome, position, sampling.n)
                bar.update(len(chunks[chunk]))

    def _outcomes(self, chunks: list[list[int]], prompts, params):
        """(chunk number, per-prompt summaries or an error message), as chunks finish."""
        if self._llm is not None:
            for number, indices in enumerate(chunks):
                try:
                    yield number, run_chunk(self._llm, self._vllm, [prompts[i] for i in indices], params)
                except Exception as exc:  # e.g. a prompt longer than max_model_len: fail the chunk, not the run
                    yield number, f"{type(exc).__name__}: {exc}"
            return
        for number, indices in enumerate(chunks):
            self._tasks.put((number, [prompts[i] for i in indices], params))
        for _ in chunks:
            yield self._next_result()

    def _next_result(self):
        while True:
            try:
                return self._results.get(timeout=_POLL_S)
            except queue.Empty:
                dead = [w for w in self._workers if not w.is_alive()]
                if dead:
                    codes = ", ".join(str(w.exitcode) for w in dead)
                    raise UserError(
                        f"{len(dead)} vLLM replica process(es) exited (exit codes {codes}); see the log above"
                    )

    @staticmethod
    def _result(request: GenerationRequest, outcome, position: int, n: int) -> GenerationResult:
        if isinstance(outcome, str):
            return rules.failed(request, outcome)
        texts, counts, prompt_tokens = outcome[position]
        texts, counts = rules.widen(texts, counts, n)
        return GenerationResult(
            key=request.key, completions=texts, prompt_tokens=prompt_tokens, completion_tokens=counts
        )

    def close(self) -> None:
        for _ in self._workers:
            self._tasks.put(None)
        for worker in self._workers:
            worker.join(timeout=60)
            if worker.is_alive():
                worker.terminate()
        self._workers = []
        self._llm = None
        gc.collect()
