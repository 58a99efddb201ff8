"""Offline generation with vLLM on the GPUs of this node: the fast path for distillation and evaluation.

Tensor parallelism splits one model over `tensor_parallel_size` GPUs inside one
engine. Data parallelism runs `data_parallel_size` independent engines, each in
its own process pinned (through CUDA_VISIBLE_DEVICES) to its own group of GPUs;
they pull chunks of prompts from one shared queue, so a replica that drew short
notes simply takes more chunks. Independent replicas need none of vLLM's
cross-replica coordination, which only mixture-of-experts models benefit from.

A vLLM engine starts processes of its own (its engine core, its tensor-parallel
workers), and a daemonic process may not have children, so replicas are
ordinary processes. Each leads a process group of its own, which its engine's
processes join; `close()` (or the collector, or interpreter exit) asks every
replica to stop, waits a bounded time, then signals the whole group, so no
replica and no engine process outlives the generator. A replica that dies
stops the run with an error naming it and its GPUs.

Prompts are rendered here, with the same code as every other backend, and handed
to vLLM as token ids, so vLLM adds no second BOS and applies no template of its
own. Work is cut into chunks of `chunk_size` prompts: results come back, and
can be saved, one chunk at a time.

vLLM is an optional dependency (`deepicd[gpu]`) imported only when this backend
is built; everything else here is plain Python that the CPU test suite checks.
"""

from __future__ import annotations

import gc
import multiprocessing
import multiprocessing.connection
import multiprocessing.util
import os
import queue
import signal
import time
import traceback
from typing import Iterable, Iterator

from deepicd.errors import UserError
from deepicd.generate import sampling as rules
from deepicd.generate.base import GenerationRequest, GenerationResult, SamplingConfig
from deepicd.generate.config import GeneratorConfig, require_model
from deepicd.generate.render import prompt_ids, stop_token_ids

_POLL_S = 1.0  # how often a replica waiting for work checks that its parent is still alive
_STOP_S = 60.0  # how long close() lets replicas shut their engines down before terminating them
_KILL_S = 10.0  # how long a terminated replica group gets before it is killed


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
    """Arguments of `vllm.SamplingParams`: greedy decodes once (widened to n later), sampling draws n.

    Every filter is stated, "off" included, so that nothing is left to the
    model's generation defaults; -1 is the "off" for top_k that every vLLM
    release accepts.
    """
    chosen = rules.filters(sampling)
    return {
        "n": rules.draws(sampling),
        "temperature": chosen["temperature"],
        "top_p": chosen["top_p"],
        "top_k": -1 if chosen["top_k"] is None else chosen["top_k"],
        "min_p": chosen["min_p"],
        "repetition_penalty": chosen["repetition_penalty"],
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


class VLLMEngine:
    """One `vllm.LLM` behind the three calls the generator makes: build, `run` a chunk, `close`.

    The generator is written against this small shape rather than vLLM itself,
    so that a stand-in engine (one that also starts a child process, as vLLM
    does) can exercise the replica machinery on a machine without GPUs.
    """

    def __init__(self, **engine):
        self._vllm = import_vllm()
        self._llm = self._vllm.LLM(**engine)

    def run(self, prompts: list[list[int]], params: dict) -> list[tuple[list[str], list[int], int]]:
        return run_chunk(self._llm, self._vllm, prompts, params)

    def close(self) -> None:
        """Stop the engine's own processes now rather than whenever the collector gets to them.

        Releases differ in what they offer: `LLM.shutdown()` where it exists,
        else the shutdown of the engine-core client (vLLM's V1 engine).
        """
        llm, self._llm = self._llm, None
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        stop = getattr(llm, "shutdown", None) or getattr(core, "shutdown", None)
        if callable(stop):
            stop()
        del llm, core, stop
        gc.collect()


# -- one replica (runs in its own process) ------------------------------------------------------------


def _replica(gpus: str, engine_class, engine: dict, tasks, results) -> None:
    """Body of one data-parallel process: load an engine on `gpus`, serve chunks until told to stop, shut down.

    The replica leads a process group of its own so that the parent can signal
    the engine's processes together with it. Whether the engine came up is
    reported at once: a replica that cannot load its model is an error, not a
    silent wait for results that will never come.
    """
    if hasattr(os, "setpgid"):
        os.setpgid(0, 0)
    os.environ["CUDA_VISIBLE_DEVICES"] = gpus
    try:
        llm = engine_class(**engine)
    except BaseException as exc:
        traceback.print_exc()
        results.send(("failed", f"{type(exc).__name__}: {exc}"))
        _stop_children()
        raise SystemExit(1) from None
    try:
        results.send(("ready",))
        _serve(llm, tasks, results)
    finally:
        _close_quietly(llm)
        _stop_children()


def _serve(llm, tasks, results) -> None:
    """Run chunks from `tasks` until a None arrives or the parent process is gone."""
    parent = multiprocessing.parent_process()
    while True:
        try:
            task = tasks.get(timeout=_POLL_S)
        except queue.Empty:
            if parent is not None and not parent.is_alive():
                return
            continue
        if task is None:
            return
        call, chunk, prompts, params = task
        try:
            outcome = llm.run(prompts, params)
        except Exception as exc:  # reported per chunk; the replica keeps serving
            outcome = f"{type(exc).__name__}: {exc}"
        results.send(("chunk", call, chunk, outcome))


def _close_quietly(llm) -> None:
    """Shut an engine down on the way out; a failure here must not hide why the replica is stopping."""
    close = getattr(llm, "close", None)
    if callable(close):
        try:
            close()
        except Exception:
            traceback.print_exc()


def _stop_children() -> None:
    """Kill any process the engine left running after `_KILL_S`, so the replica never waits on it forever."""
    children = multiprocessing.active_children()
    deadline = time.monotonic() + _KILL_S
    for child in children:
        child.join(timeout=max(0.0, deadline - time.monotonic()))
    for child in children:
        if child.is_alive():
            child.kill()
            child.join()


# -- the replicas, seen from the parent ---------------------------------------------------------------


class _Replicas:
    """The data-parallel processes, their shared task queue and one result pipe each.

    Holds no reference to the generator, so that it can be closed by a
    finalizer when the generator is collected or the interpreter exits.
    """

    def __init__(self, engine_class, engine: dict, groups: list[str]):
        context = multiprocessing.get_context("spawn")  # CUDA cannot be forked
        self.groups = groups
        self.tasks = context.Queue()
        self.workers: list = []
        self.links: list = []
        self.closed = False
        try:
            for rank, gpus in enumerate(groups):
                self._start(context, rank, gpus, engine_class, engine)
        except BaseException:
            self.close(grace=0.0)
            raise

    def _start(self, context, rank: int, gpus: str, engine_class, engine: dict) -> None:
        receiver, sender = context.Pipe(duplex=False)
        worker = context.Process(
            target=_replica, args=(gpus, engine_class, engine, self.tasks, sender), name=f"deepicd-vllm-replica-{rank}"
        )
        self.links.append(receiver)
        worker.start()
        self.workers.append(worker)
        sender.close()  # the replica holds the only writing end: its death reads as end of file

    def describe(self, rank: int) -> str:
        return f"vLLM replica {rank} (CUDA_VISIBLE_DEVICES={self.groups[rank]})"

    def wait_ready(self) -> None:
        """Return once every replica has loaded its engine; raise UserError (replicas stopped) if one cannot."""
        waiting = set(range(len(self.workers)))
        while waiting:
            rank, message = self.receive()
            if message[0] == "failed":
                self.fail(f"{self.describe(rank)} failed to start its engine: {message[1]}")
            if message[0] == "ready":
                waiting.discard(rank)

    def submit(self, call: int, chunk: int, prompts: list[list[int]], params: dict) -> None:
        self.tasks.put((call, chunk, prompts, params))

    def next_chunk(self, call: int):
        """(chunk number, summaries or error message) of the next chunk of generate call `call` to finish."""
        while True:
            _, message = self.receive()
            if message[0] == "chunk" and message[1] == call:
                return message[2], message[3]

    def receive(self):
        """(rank, message) of the next message from any replica; raise UserError if a replica died instead."""
        while True:
            for rank, link in enumerate(self.links):
                if link.poll():
                    try:
                        return rank, link.recv()
                    except EOFError:
                        self.died(rank)
            sentinels = {worker.sentinel: rank for rank, worker in enumerate(self.workers)}
            ready = multiprocessing.connection.wait([*self.links, *sentinels])
            for rank in sorted(sentinels[item] for item in ready if item in sentinels):
                if not self.links[rank].poll():  # exited with nothing left unread
                    self.died(rank)

    def died(self, rank: int) -> None:
        worker = self.workers[rank]
        self.close(grace=0.0)
        code = worker.exitcode
        how = f"was killed by signal {-code}" if code is not None and code < 0 else f"exited with code {code}"
        raise UserError(f"{self.describe(rank)} {how} before finishing its work; see its log above")

    def fail(self, message: str) -> None:
        self.close(grace=0.0)
        raise UserError(message)

    def cancel_pending(self) -> None:
        """Take back chunks no replica has started (best effort), e.g. when the caller stops reading early."""
        try:
            while True:
                self.tasks.get_nowait()
        except (queue.Empty, OSError, ValueError):
            pass

    def close(self, grace: float | None = None) -> None:
        """Ask every replica to stop; after `grace` seconds (`_STOP_S`) terminate, after `_KILL_S` kill, their groups.

        A failed run passes no grace: the replicas still at work would finish
        their chunk before reading the request to stop, for results nobody reads.
        """
        if self.closed:
            return
        self.closed = True
        self.cancel_pending()
        for _ in self.workers:
            self.tasks.put(None)
        self._await_exit(_STOP_S if grace is None else grace)
        self._signal_all(signal.SIGTERM)
        self._await_exit(_KILL_S)
        self._signal_all(signal.SIGKILL)
        for worker in self.workers:
            worker.join()
        for link in self.links:
            link.close()
        self.tasks.cancel_join_thread()
        self.tasks.close()

    def _await_exit(self, seconds: float) -> None:
        """Wait up to `seconds` for every replica to exit, reading (and dropping) results so none blocks on a full pipe.

        Exits are watched through the sentinels, which does not reap the
        processes: an exited replica's id, and so its group id, stays reserved
        until the final join, so the group signals below cannot reach a stranger.
        """
        deadline = time.monotonic() + seconds
        links = list(self.links)
        while True:
            running = [worker.sentinel for worker in self.workers]
            running = [s for s in running if not multiprocessing.connection.wait([s], timeout=0)]
            left = deadline - time.monotonic()
            if not running or left <= 0:
                return
            ready = multiprocessing.connection.wait([*running, *links], timeout=left)
            links = [link for link in links if link not in ready or _discard(link)]

    def _signal_all(self, signum: int) -> None:
        for worker in self.workers:
            if worker.pid is not None:
                _signal_group(worker.pid, signum)


def _signal_group(pid: int, signum: int) -> None:
    """Send `signum` to the process group a replica leads (its engine's processes included), else to the replica."""
    if hasattr(os, "killpg"):
        try:
            os.killpg(pid, signum)
            return
        except (ProcessLookupError, PermissionError):  # the replica had not made its group yet
            pass
    try:
        os.kill(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _discard(link) -> bool:
    """Read and drop whatever a replica's pipe holds now; False once the pipe is closed."""
    try:
        while link.poll():
            link.recv()
    except (EOFError, OSError):
        return False
    return True


class VLLMGenerator:
    """`vllm.LLM` in this process (data_parallel_size=1) or in one process per replica.

    `engine_class` builds one engine from `engine_kwargs(config)`; by default a
    real vLLM engine. For data parallelism it must be importable by name (a
    module-level class), since each replica is a freshly started interpreter.
    """

    def __init__(self, config: GeneratorConfig, *, tokenizer=None, engine_class=None):
        require_model(config)
        self.config = config
        if engine_class is None:
            import_vllm()  # fail here, with the install hint, rather than in every replica
            engine_class = VLLMEngine
        if tokenizer is None:
            from deepicd.models import load_tokenizer

            tokenizer = load_tokenizer(config.tokenizer_path or config.model, purpose="generate")
        self.tokenizer = tokenizer
        self.stop_ids = stop_token_ids(tokenizer)
        self._engine = None
        self._replicas: _Replicas | None = None
        self._calls = 0
        engine = engine_kwargs(config)
        if config.data_parallel_size == 1:
            self._engine = engine_class(**engine)
        else:
            self._start_replicas(engine_class, engine)

    def _start_replicas(self, engine_class, engine: dict) -> None:
        groups = gpu_groups(visible_gpus(), self.config.tensor_parallel_size, self.config.data_parallel_size)
        replicas = _Replicas(engine_class, engine, groups)
        self._replicas = replicas
        # Runs when the generator is collected, and at exit before multiprocessing joins its (non-daemonic)
        # children, which would otherwise wait forever on replicas idling for work.
        self._finalizer = multiprocessing.util.Finalize(self, replicas.close, exitpriority=10)
        replicas.wait_ready()

    @property
    def replica_pids(self) -> list[int]:
        """Process ids of the data-parallel replicas (empty with data_parallel_size=1)."""
        return [worker.pid for worker in self._replicas.workers] if self._replicas is not None else []

    def generate(self, requests: Iterable[GenerationRequest], sampling: SamplingConfig) -> Iterator[GenerationResult]:
        from tqdm import tqdm

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
        if self._replicas is None:
            if self._engine is None:
                raise UserError("this vLLM generator is closed")
            for number, indices in enumerate(chunks):
                try:
                    yield number, self._engine.run([prompts[i] for i in indices], params)
                except Exception as exc:  # e.g. a prompt longer than max_model_len: fail the chunk, not the run
                    yield number, f"{type(exc).__name__}: {exc}"
            return
        if self._replicas.closed:
            raise UserError("this vLLM generator is closed")
        self._calls += 1
        call = self._calls  # results of an earlier, abandoned call are told apart by this number
        for number, indices in enumerate(chunks):
            self._replicas.submit(call, number, [prompts[i] for i in indices], params)
        try:
            for _ in chunks:
                yield self._replicas.next_chunk(call)
        finally:
            if not self._replicas.closed:
                self._replicas.cancel_pending()

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
        """Stop the engine, or every replica and the processes their engines started."""
        if self._replicas is not None:
            self._finalizer()
        engine, self._engine = self._engine, None
        if engine is not None:
            _close_quietly(engine)
        gc.collect()
